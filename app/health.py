"""``/health`` and ``/versions``: what probes and federation redirectors read."""

from __future__ import annotations

from importlib import metadata

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from app.extensions import redis_client

bp = Blueprint("health", __name__)

VERSION = "0.1.0"


@bp.route("/versions")
def versions() -> ResponseReturnValue:
    response = jsonify({"bindery": VERSION, "builder": f"repo2docker {metadata.version('jupyter-repo2docker')}"})
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.route("/health")
def health() -> ResponseReturnValue:
    checks = []
    try:
        redis_ok = bool(redis_client.client.ping())
    except Exception:  # noqa: BLE001 - any failure means "not healthy", reported not raised
        redis_ok = False
    checks.append({"service": "Redis", "ok": redis_ok})
    ok = all(check["ok"] for check in checks)
    return jsonify({"ok": ok, "checks": checks}), 200 if ok else 503
