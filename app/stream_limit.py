"""At most ``max_streams_per_ip`` open event streams per client, counted across all web processes.

Each open stream is a member of the client's sorted set in Redis, scored by when
its lease runs out.  The stream renews its lease as it sends (keepalives come at
least every ``keepalive_interval``) and removes itself when it ends; a process
that dies without saying so leaves members whose leases simply run out, so a
crash never locks a client out for longer than one lease.  Admission (drop
expired members, count, add) is one Lua script, so two processes cannot both
take the last place.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator

import redis

from app import keys

MIN_LEASE = 60.0

_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local open = redis.call('ZCARD', KEYS[1])
if open >= tonumber(ARGV[4]) then
  return {0, open}
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {1, open + 1}
"""


def lease_seconds(keepalive_interval: float) -> float:
    """How long a stream's place outlives its last renewal: three keepalives, at least a minute."""
    return max(MIN_LEASE, 3 * keepalive_interval)


class StreamSlot:
    """One admitted stream's place; renew it while streaming, release it at the end."""

    def __init__(self, client: redis.Redis, key: str, member: str, lease: float) -> None:
        self._client = client
        self.key = key
        self.member = member
        self._lease = lease
        self._renewed = time.monotonic()

    def renew_if_due(self) -> None:
        """Push the lease forward, at most three times per lease (cheap with thousands of streams)."""
        now = time.monotonic()
        if now - self._renewed < self._lease / 3:
            return
        self._renewed = now
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.zadd(self.key, {self.member: time.time() + self._lease})
            pipe.expire(self.key, int(self._lease) + 1)
            pipe.execute()
        except redis.RedisError:
            pass  # the lease runs out a little early at worst

    def release(self) -> None:
        try:
            self._client.zrem(self.key, self.member)
        except redis.RedisError:
            pass  # its lease runs out instead

    def hold(self, body: Iterable[str]) -> Iterator[str]:
        """Pass ``body`` through, renewing the place as it flows and giving it up when it ends."""
        try:
            for chunk in body:
                self.renew_if_due()
                yield chunk
        finally:
            self.release()
            close = getattr(body, "close", None)
            if close is not None:
                close()


def admit(client: redis.Redis, key: str, limit: int, lease: float) -> tuple[StreamSlot | None, int]:
    """A place for one more stream of ``key`` if fewer than ``limit`` are open; returns (slot, open count)."""
    now = time.time()
    member = f"{os.getpid()}:{uuid.uuid4().hex}"  # the pid says which process holds it
    redis_key = keys.STREAMS(key)
    admitted, count = client.eval(_ADMIT, 1, redis_key, now, now + lease, member, limit,  # type: ignore[misc]
                                  int(lease) + 1)
    if not admitted:
        return None, int(count)
    return StreamSlot(client, redis_key, member, lease), int(count)
