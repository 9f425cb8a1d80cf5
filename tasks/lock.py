"""The one lock helper: at most one build per image, and at most N server starts at once, in order.

``BuildLock``: a thin layer over redis-py's ``Lock`` (SET NX PX, compare-and-delete in Lua).
The lock's value is the id of the build holding it, so a request that finds
the lock taken knows whose event stream to attach to.  A holder keeps it alive
with a heartbeat; when a worker dies the lock expires after ``ttl`` seconds.

``StartLine``: a counting semaphore with a first-come-first-served line in front of it,
shared by every worker (issue 25: thirty servers started at once on two cores are all
late; started a few at a time, most are early and none is later).  Both live in Redis
and are changed only by one Lua script, so admission is atomic across workers.  A slot is a
lease the holder renews (the same heartbeat as the build lock's); a place in the line is a
lease the waiter renews each time it looks.  A worker that dies gives up both when its
leases run out, so a dead worker never holds the line.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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
        self.refresh(build_id, ttl)
        with _heartbeat(lambda: self.refresh(build_id, ttl), ttl, f"{self.key} ({build_id[:8]})") as lost:
            yield lost


@contextmanager
def _heartbeat(refresh: Callable[[], bool], ttl: float, what: str) -> Iterator[threading.Event]:
    """Call ``refresh`` every ``ttl``/3 s while the body runs; the yielded event is set once it returns False."""
    lost = threading.Event()
    stop = threading.Event()

    def beat() -> None:
        last_beat = time.monotonic()
        while not stop.wait(ttl / 3):
            try:
                held = refresh()
            except redis.RedisError as exc:
                # Redis restarting: keep trying while the lease may still be ours (it persists).
                log.warning("lock %s: heartbeat failed (%s)", what, type(exc).__name__)
                if time.monotonic() - last_beat < ttl:
                    continue
                held = False
            if not held:
                lost.set()
                return
            last_beat = time.monotonic()

    thread = threading.Thread(target=beat, name=f"lock-heartbeat-{what[-12:]}", daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        stop.set()
        thread.join()


# --- the line of server starts -------------------------------------------------------------------

# KEYS: line (member → arrival), places (member → lease end), slots (member → lease end).
# ARGV: member, arrival, lease seconds, limit.  Redis's own clock times every lease, so the
# workers' clocks need not agree.  Returns {admitted (0/1), place in the line (0 = first), slots taken}.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local lease = tonumber(ARGV[3])
local expiry = now + lease
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('ZREM', KEYS[1], gone)
  redis.call('ZREM', KEYS[2], gone)
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], math.ceil(lease) * 4) end
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then
  redis.call('ZADD', KEYS[3], expiry, ARGV[1])
  return {1, 0, redis.call('ZCARD', KEYS[3])}
end
redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[2], expiry, ARGV[1])
local place = redis.call('ZRANK', KEYS[1], ARGV[1])
local taken = redis.call('ZCARD', KEYS[3])
if place < tonumber(ARGV[4]) - taken then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[3], expiry, ARGV[1])
  return {1, 0, taken + 1}
end
return {0, place, taken}
"""

# KEYS: slots.  ARGV: member, lease seconds.  1 while the member still holds its slot.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local ends = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or 0)
if ends <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""

# KEYS: line, places.  How many wait whose place is still leased.
_WAITING = """
local t = redis.call('TIME')
return redis.call('ZCOUNT', KEYS[2], tonumber(t[1]) + tonumber(t[2]) / 1e6, '+inf')
"""


START_LINES = ("start", "hub")  # the docker launcher's; launches a JupyterHub answered 429


class LeftTheLine(Exception):
    """The launch left the line before its turn (its client went away: the abandon sweep ended it)."""


def starting_message(ahead: int) -> str:
    """What a launch waiting to start is told (BinderHub clients show a ``launching`` event's message)."""
    if ahead <= 0:
        return "Waiting to start: yours is next.\n"
    servers = "1 server is" if ahead == 1 else f"{ahead} servers are"
    return f"Waiting to start: {servers} starting before yours.\n"


class StartLine:
    """First come, first served admission of server starts, ``limit`` at a time, across workers.

    ``line`` names the line: ``start`` (the docker launcher's engine) or ``hub`` (launches a
    JupyterHub turned away with 429 retry one at a time, in order).
    """

    LEASE = 15.0  # seconds a dead worker's slot or place lasts; live holders renew every third of it

    def __init__(self, client: redis.Redis, line: str) -> None:
        self.client = client
        self.keys = [keys.START_LINE(line), keys.START_PLACES(line), keys.START_SLOTS(line)]

    def admit(self, member: str, arrival: float, limit: int) -> tuple[bool, int, int]:
        """One look: (admitted now, place in the line, slots taken); joins the line if not in it."""
        admitted, place, taken = self.client.eval(_ADMIT, 3, *self.keys, member, arrival, self.LEASE, limit)
        return bool(admitted), int(place), int(taken)

    def renew(self, member: str) -> bool:
        return bool(self.client.eval(_RENEW, 1, self.keys[2], member, self.LEASE))

    def leave(self, member: str) -> None:
        """Out of the line and its slot given back (started, failed, cancelled)."""
        pipe = self.client.pipeline(transaction=False)
        for key in self.keys:
            pipe.zrem(key, member)
        pipe.execute()

    def waiting(self) -> int:
        """Launches waiting for their turn (places still leased)."""
        return int(self.client.eval(_WAITING, 2, *self.keys[:2]))

    @contextmanager
    def turn(self, member: str, arrival: float, limit: int, *, told: Callable[[int], None],
             wanted: Callable[[], bool], poll: float = 0.5) -> Iterator[None]:
        """Wait for a slot in order of ``arrival``, hold it while the body runs, then give it back.

        ``told(ahead)`` hears how many starts come before this one whenever that changes;
        ``wanted()`` is asked about once a second while waiting: False leaves the line
        (LeftTheLine).  The first in line looks every 50 ms, the others every ``poll`` s.
        """
        try:
            self._wait(member, arrival, limit, told, wanted, poll)
            with _heartbeat(lambda: self.renew(member), self.LEASE, member):
                yield
        finally:
            self.leave(member)

    def _wait(self, member: str, arrival: float, limit: int, told: Callable[[int], None],
              wanted: Callable[[], bool], poll: float) -> None:
        said = -1
        asked = time.monotonic()
        while True:
            admitted, place, taken = self.admit(member, arrival, limit)
            if admitted:
                return
            ahead = place + taken
            if ahead != said:
                told(ahead)
                said = ahead
            if time.monotonic() - asked >= 1:
                asked = time.monotonic()
                if not wanted():
                    raise LeftTheLine(member)
            time.sleep(0.05 if place < max(1, limit - taken + 1) else poll)


def start_concurrency(config: dict[str, Any]) -> int:
    """``launch_start_concurrency``: a number, or ``auto`` (the cores of this machine; see bench/README.md)."""
    value = config.get("launch_start_concurrency", "auto")
    if value == "auto":
        return max(1, os.cpu_count() or 1)
    return int(value)
