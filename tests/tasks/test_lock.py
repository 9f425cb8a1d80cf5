"""The build lock against a real Redis: one holder, expiry of a dead holder, heartbeat."""

from __future__ import annotations

import time

import redis

from app.redis_server import EmbeddedRedis
from tasks.lock import BuildLock


def _client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def test_only_one_holder_and_holder_is_recorded(redis_server: EmbeddedRedis) -> None:
    lock = BuildLock(_client(redis_server), "img:one")
    assert lock.acquire("a" * 32, ttl=30)
    assert not lock.acquire("b" * 32, ttl=30)
    assert lock.holder() == "a" * 32
    assert lock.acquire("a" * 32, ttl=30), "the holder may take it again (a re-delivered build)"
    lock.release("b" * 32)  # not the holder: no effect
    assert lock.holder() == "a" * 32
    lock.release("a" * 32)
    assert lock.holder() is None


def test_dead_holder_lock_expires(redis_server: EmbeddedRedis) -> None:
    lock = BuildLock(_client(redis_server), "img:expire")
    assert lock.acquire("a" * 32, ttl=1)
    time.sleep(1.2)
    assert lock.acquire("b" * 32, ttl=30)
    assert not lock.refresh("a" * 32, ttl=30), "the old holder must notice it lost the lock"


def test_heartbeat_keeps_lock_past_its_ttl(redis_server: EmbeddedRedis) -> None:
    lock = BuildLock(_client(redis_server), "img:heartbeat")
    assert lock.acquire("a" * 32, ttl=1)
    with lock.heartbeat("a" * 32, ttl=1) as lost:
        time.sleep(2.0)
        assert lock.holder() == "a" * 32
    assert not lost.is_set()
    lock.release("a" * 32)
