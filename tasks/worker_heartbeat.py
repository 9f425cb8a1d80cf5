"""Which workers are alive, per queue: each worker says so every few seconds, /health reads it.

A Celery ping (``control.ping``) would also tell, but it broadcasts to every worker
and must wait out its whole timeout, since nobody knows how many answers to expect.
A sorted set per queue, with each worker's name scored by its last heartbeat, costs
one ZADD per worker every ``INTERVAL`` seconds and one ZCOUNT per queue for /health.
The heartbeat is written from the worker's main process (the prefork pool's parent,
the gevent worker's hub), so a killed worker stops beating even while its pool
process still runs a build.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis

from app import keys

log = logging.getLogger(__name__)

#: Seconds between heartbeats, and the age after which a worker counts as gone.
INTERVAL = 5.0
MAX_AGE = 3 * INTERVAL + 1


def queues_of(option: Any, default: str) -> list[str]:
    """The queues a worker consumes, from its ``-Q`` option (a string or a list) or the default queue."""
    names = [q.strip() for q in option.split(",")] if isinstance(option, str) else list(option or [])
    return [name for name in names if name] or [default]


def beat(client: Any, queues: Iterable[str], worker: str, now: float | None = None) -> None:
    """Record ``worker`` as alive on each queue, and forget workers silent for much longer."""
    stamp = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        key = keys.WORKERS(queue)
        pipe.zadd(key, {worker: stamp})
        pipe.zremrangebyscore(key, "-inf", stamp - 10 * MAX_AGE)
        pipe.expire(key, int(10 * MAX_AGE))
    pipe.execute()


def forget(client: Any, queues: Iterable[str], worker: str) -> None:
    """A worker that shuts down cleanly says so, so /health does not wait for its heartbeat to age."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.zrem(keys.WORKERS(queue), worker)
    pipe.execute()


def alive(client: Any, queue: str, now: float | None = None) -> int:
    """How many workers on ``queue`` sent a heartbeat within ``MAX_AGE`` seconds."""
    stamp = time.time() if now is None else now
    return int(client.zcount(keys.WORKERS(queue), stamp - MAX_AGE, "+inf"))


def keep_beating(client: Any, queues: list[str], worker: str) -> threading.Thread:
    """Beat now (the worker is ready), then every ``INTERVAL`` seconds in a daemon thread."""

    def run() -> None:
        while True:
            try:
                beat(client, queues, worker)
            except redis.RedisError as exc:  # Redis restarting: /health says so on its own
                log.warning("worker heartbeat not written (%s); trying again", type(exc).__name__)
            time.sleep(INTERVAL)

    thread = threading.Thread(target=run, name="bindery-worker-heartbeat", daemon=True)
    thread.start()
    return thread
