"""The one place HTTP errors become responses: JSON ``{"message", "status_code"}``."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from app.errors import BinderyError

log = logging.getLogger(__name__)


def _bindery_error(exc: BinderyError) -> ResponseReturnValue:
    return jsonify(exc.to_dict()), exc.status_code


def _http_error(exc: HTTPException) -> ResponseReturnValue:
    code = exc.code or 500
    return jsonify({"message": exc.description or exc.name, "status_code": code}), code


def _unexpected(exc: Exception) -> ResponseReturnValue:
    log.exception("unhandled error")
    return jsonify({"message": "Internal error; it has been logged.", "status_code": 500}), 500


def init_app(app: Flask) -> None:
    app.register_error_handler(BinderyError, _bindery_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
