"""Every build's full log, kept for ``build_log_retention`` at a URL anyone can share.

The URL names the image's source, not a build attempt:
``/logs/<provider>/<spec with the resolved ref>``, so a link to why a commit
failed stays valid after the build is gone.  Logs live in Redis (shared by every
worker and web process), capped at ``build_log_max_bytes``.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template, request
from flask.typing import ResponseReturnValue

from app.build_log_store import log_path, read
from app.errors import NotFound
from app.extensions import redis_client
from app.rawpath import raw_spec

bp = Blueprint("build_logs", __name__)

@bp.route("/logs/<provider>/<path:spec>")
def show(provider: str, spec: str) -> ResponseReturnValue:
    path = log_path(provider, raw_spec(f"/logs/{provider}/", spec))
    found = read(redis_client.client, path)
    if found is None:
        raise NotFound("No build log is kept for this repository and commit (it may have expired).")
    meta, text = found
    if request.args.get("format") == "text" or request.accept_mimetypes.best == "text/plain":
        return Response(text, mimetype="text/plain")
    days = current_app.config["BINDERY"]["build_log_retention"] / 86400
    return render_template("build_log.html", meta=meta, log=text, retention_days=days)
