"""The one lock helper: at most one build per image, across every worker.

A thin layer over redis-py's ``Lock`` (SET NX PX, compare-and-delete in Lua).
The lock's value is the id of the build holding it, so a request that finds
the lock taken knows whose event stream to attach to.  A holder keeps it alive
with a heartbeat; when a worker dies the lock expires after ``ttl`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError

from app import keys

log = logging.getLogger(__name__)


class BuildLock:
    def __init__(self, client: redis.Redis, image: str) -> None:
        self.client = client
        self.key = keys.BUILD_LOCK(keys.digest(image))

    def _lock(self, build_id: str, ttl: float) -> redis.lock.Lock:
        lock = self.client.lock(self.key, timeout=ttl, thread_local=False)
        lock.local.token = build_id.encode()
        return lock

    def acquire(self, build_id: str, ttl: float) -> bool:
        """Take the lock for ``build_id`` if nobody holds it (or ``build_id`` already does)."""
        if self.client.set(self.key, build_id, nx=True, ex=int(ttl)):
            return True
        return self.holder() == build_id and self.refresh(build_id, ttl)

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

    def refresh(self, build_id: str, ttl: float) -> bool:
        """Reset the expiry to ``ttl``; False when ``build_id`` no longer holds the lock."""
        lock = self._lock(build_id, ttl)
        try:
            return bool(lock.reacquire())
        except LockError:
            return False

    def release(self, build_id: str) -> None:
        try:
            self._lock(build_id, 1).release()
        except LockError:
            log.info("build lock %s was no longer held by %s", self.key, build_id)

    @contextmanager
    def heartbeat(self, build_id: str, ttl: float) -> Iterator[threading.Event]:
        """Keep the lock alive while the body runs; the yielded event is set if it was lost."""
        lost = threading.Event()
        stop = threading.Event()

        def beat() -> None:
            last_beat = time.monotonic()
            while not stop.wait(ttl / 3):
                try:
                    held = self.refresh(build_id, ttl)
                except redis.RedisError as exc:
                    # Redis restarting: keep trying while the lock may still be ours (it persists).
                    log.warning("build lock %s: heartbeat failed (%s)", self.key, type(exc).__name__)
                    if time.monotonic() - last_beat < ttl:
                        continue
                    held = False
                if not held:
                    lost.set()
                    return
                last_beat = time.monotonic()

        thread = threading.Thread(target=beat, name=f"lock-heartbeat-{build_id[:8]}", daemon=True)
        self.refresh(build_id, ttl)
        thread.start()
        try:
            yield lost
        finally:
            stop.set()
            thread.join()
