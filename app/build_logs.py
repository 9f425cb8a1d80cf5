"""Every build's full log, kept for ``build_log_retention`` at a URL anyone can share.

The URL names the image's source, not a build attempt:
``/logs/<provider>/<spec with the resolved ref>``, so a link to why a commit
failed stays valid after the build is gone.  Logs live in Redis (shared by every
worker and web process), capped at ``build_log_max_bytes``.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import redis
from flask import Blueprint, Response, current_app, render_template, request
from flask.typing import ResponseReturnValue

from app.errors import NotFound
from app.extensions import redis_client
from app.rawpath import raw_spec

bp = Blueprint("build_logs", __name__)

TRUNCATED = "\n[Bindery: the log is longer than build_log_max_bytes; the rest was not kept.]\n"


def log_path(provider: str, resolved_spec: str) -> str:
    return f"/logs/{provider}/{resolved_spec}"


def _keys(path: str) -> tuple[str, str]:
    digest = hashlib.sha256(path.encode()).hexdigest()[:32]
    return f"bindery:buildlog:{digest}", f"bindery:buildlog:{digest}:meta"


class BuildLog:
    """The writer a build step appends to."""

    def __init__(self, client: redis.Redis, path: str, config: dict[str, Any]) -> None:
        self.client = client
        self.log_key, self.meta_key = _keys(path)
        self.max_bytes = config["build_log_max_bytes"]
        self.retention = config["build_log_retention"]
        self.size = 0

    def start(self, **meta: Any) -> None:
        pipe = self.client.pipeline()
        pipe.delete(self.log_key, self.meta_key)
        fields: dict[str, Any] = {**meta, "status": "building", "started": str(time.time())}
        pipe.hset(self.meta_key, mapping=fields)  # type: ignore[arg-type]
        pipe.expire(self.meta_key, self.retention)
        pipe.execute()

    def append(self, text: str) -> None:
        if self.size > self.max_bytes:
            return
        data = text.encode("utf-8", errors="replace")
        if self.size + len(data) > self.max_bytes:
            data = data[: self.max_bytes - self.size] + TRUNCATED.encode()
            self.size = self.max_bytes + 1
        else:
            self.size += len(data)
        self.client.append(self.log_key, data)

    def finish(self, status: str) -> None:
        pipe = self.client.pipeline()
        pipe.hset(self.meta_key, mapping={"status": status, "finished": str(time.time())})
        pipe.expire(self.meta_key, self.retention)
        pipe.expire(self.log_key, self.retention)
        pipe.execute()


def read(client: redis.Redis, path: str) -> tuple[dict[str, str], str] | None:
    log_key, meta_key = _keys(path)
    pipe = client.pipeline()
    pipe.hgetall(meta_key)
    pipe.get(log_key)
    meta, text = pipe.execute()
    return (meta, text or "") if meta else None


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
