"""Build logs in Redis: the writer a build step appends to, and the reader the log pages use.

A log is keyed by its URL path (``/logs/<provider>/<spec with the resolved ref>``), capped
at ``build_log_max_bytes`` and kept for ``build_log_retention``.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from app import keys

TRUNCATED = "\n[Bindery: the log is longer than build_log_max_bytes; the rest was not kept.]\n"


def log_path(provider: str, resolved_spec: str) -> str:
    return f"/logs/{provider}/{resolved_spec}"


def _keys(path: str) -> tuple[str, str]:
    digest = keys.digest(path)
    return keys.BUILD_LOG(digest), keys.BUILD_LOG_META(digest)


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
        data = b""
        if self.size <= self.max_bytes:
            data = text.encode("utf-8", errors="replace")
            if self.size + len(data) > self.max_bytes:
                data = data[: self.max_bytes - self.size] + TRUNCATED.encode()
                self.size = self.max_bytes + 1
            else:
                self.size += len(data)
        # a build longer than the retention keeps its record: each line renews both keys
        # (and one whose worker died mid-build is gone that long after its last line)
        pipe = self.client.pipeline(transaction=False)
        if data:
            pipe.append(self.log_key, data)
        pipe.expire(self.log_key, self.retention)
        pipe.expire(self.meta_key, self.retention)
        pipe.execute()

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
