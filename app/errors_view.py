"""The one place HTTP errors become responses: JSON ``{"message", "status_code"}``.

A browser asking for a page that is not an API path gets an HTML page instead
(a real 404 page); API paths always answer JSON, whatever the client accepts.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from app.errors import BinderyError

log = logging.getLogger(__name__)

API_PATHS = ("/build", "/api", "/health", "/versions", "/metrics", "/hooks")


def _bindery_error(exc: BinderyError) -> ResponseReturnValue:
    return jsonify(exc.to_dict()), exc.status_code


def _wants_page() -> bool:
    path = request.path.rstrip("/")
    api = any(path == prefix or path.startswith(prefix + "/") for prefix in API_PATHS)
    return not api and request.accept_mimetypes.accept_html


def _http_error(exc: HTTPException) -> ResponseReturnValue:
    code = exc.code or 500
    if _wants_page():
        return render_template("error.html", code=code, name=exc.name, description=exc.description), code
    return jsonify({"message": exc.description or exc.name, "status_code": code}), code


def _unexpected(exc: Exception) -> ResponseReturnValue:
    log.exception("unhandled error")
    return jsonify({"message": "Internal error; it has been logged.", "status_code": 500}), 500


def init_app(app: Flask) -> None:
    app.register_error_handler(BinderyError, _bindery_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
