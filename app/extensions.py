"""Unbound singletons, each wired to the app by ``init_app`` in the factory.

Nothing here connects to anything at import: clients are created the first time
they are used in a process, so forked Celery workers get their own.
"""

from __future__ import annotations

from typing import Any

import docker
import redis
from flask import Flask, current_app

from app.sse import EventStream


class RedisClient:
    """One connection pool per process, shared by events, locks and rate limits."""

    def init_app(self, app: Flask) -> None:
        settings = app.config["BINDERY"]
        url = settings["redis_url"]
        if not url:
            raise RuntimeError("redis_url is not set: run `make run`, which starts an embedded Redis, "
                               "or set REDIS_URL")
        # A bounded, blocking pool: thousands of streaming greenlets share a few connections;
        # a launch worker may hold one per greenlet while it waits on a shared build.
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=max(64, settings["launch_concurrency"] + 16), timeout=20, decode_responses=True,
            health_check_interval=30, socket_keepalive=True,
        )
        app.extensions["bindery.redis"] = redis.Redis(connection_pool=pool)

    @property
    def client(self) -> redis.Redis:
        return current_app.extensions["bindery.redis"]


class EngineClient:
    """The Docker-API engine (Docker or Podman), created lazily per process."""

    def init_app(self, app: Flask) -> None:
        app.extensions["bindery.engine"] = {"client": None}

    @property
    def client(self) -> docker.DockerClient:
        slot: dict[str, Any] = current_app.extensions["bindery.engine"]
        if slot["client"] is None:
            slot["client"] = docker.DockerClient(base_url=engine_url(current_app.config["BINDERY"]),
                                                 timeout=120)
        return slot["client"]


def engine_url(config: dict[str, Any]) -> str:
    """The engine URL from config, else the conventional Docker socket."""
    return config.get("docker_host") or "unix:///var/run/docker.sock"


redis_client = RedisClient()
engine = EngineClient()
events = EventStream("events", __name__)
