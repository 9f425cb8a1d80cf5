"""Unbound singletons, each wired to the app by ``init_app`` in the factory.

Nothing here connects to anything at import: clients are created the first time
they are used in a process, so forked Celery workers get their own.
"""

from __future__ import annotations

from typing import Any

import docker
import redis
from flask import Flask, current_app
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from app.errors import EngineUnreachable
from app.sse import EventStream
from providers.base import redact_url


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
            health_check_interval=30, socket_keepalive=True, **redis_retry(settings["redis_retry_seconds"]),
        )
        app.extensions["bindery.redis"] = redis.Redis(connection_pool=pool)

    @property
    def client(self) -> redis.Redis:
        return current_app.extensions["bindery.redis"]


#: The Docker API version every client of ours (and repo2docker's) speaks: Docker 20.10 and later and
#: Podman 3 and later serve it.  Naming it spares the /version round-trip docker-py makes for each new
#: client otherwise, 0.4 s of the engine's time on Podman, which asks dpkg for its parts' versions each time.
ENGINE_API_VERSION = "1.41"


def docker_client(url: str, timeout: int = 120) -> docker.DockerClient:
    """A client of the engine at ``url``; it connects on first use, not here."""
    return docker.DockerClient(base_url=url, timeout=timeout, version=ENGINE_API_VERSION)


class EngineClient:
    """The Docker-API engine (Docker or Podman), created lazily per process."""

    def init_app(self, app: Flask) -> None:
        app.extensions["bindery.engine"] = {"client": None}

    @property
    def client(self) -> docker.DockerClient:
        slot: dict[str, Any] = current_app.extensions["bindery.engine"]
        if slot["client"] is None:
            url = engine_url(current_app.config["BINDERY"])
            try:
                slot["client"] = docker_client(url)
            except docker.errors.DockerException as exc:  # a malformed URL
                raise engine_unreachable(url, exc) from exc
        return slot["client"]


def engine_unreachable(url: str, exc: BaseException) -> EngineUnreachable:
    """The one message for an engine that does not answer, naming it (never its credentials)."""
    return EngineUnreachable(f"The container engine at {redact_url(url)} is unreachable "
                             f"({type(exc).__name__}); please try again later.")


def redis_retry(seconds: float) -> dict[str, Any]:
    """Connection options that ride out a Redis restart of up to ``seconds`` (then the error surfaces)."""
    # 0.1, 0.2, 0.4, 0.8, then 1 s apart
    retries = 0 if seconds <= 0 else 4 + max(0, int(seconds - 1.5))
    return {"retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
            "retry_on_error": [redis.ConnectionError, redis.TimeoutError]}


def engine_url(config: dict[str, Any]) -> str:
    """The engine URL from config, else the conventional Docker socket."""
    return config.get("docker_host") or "unix:///var/run/docker.sock"


redis_client = RedisClient()
engine = EngineClient()
events = EventStream("events", __name__)
