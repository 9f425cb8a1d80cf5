"""The per-address rate limit of new launches: the window on a real Redis, and the build API's answers.

The same over real gunicorn with two web processes is in tests/app/test_front_door.py.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid
from typing import Any

import pytest
import redis
from flask import Flask

from app import create_app, keys, rate_limit
from app.client_address import client_key
from app.redis_server import EmbeddedRedis

SSE = {"Accept": "text/event-stream"}
BAD_SPEC = "/build/gh/org/only-a-user"  # refused by the provider (400) after the limit is counted


def fresh_ip() -> str:
    """An address of a /64 no other test uses, so counts never carry over between tests."""
    return f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::1"


@pytest.fixture
def db(redis_server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url, decode_responses=True)


def test_fixed_window_counts_and_resets(db: redis.Redis) -> None:
    key, period = uuid.uuid4().hex, 600
    start = 1_700_000_400.0  # a window boundary (a multiple of 600)
    seen = [rate_limit.hit(db, key, 2, period, now=start + n) for n in range(3)]
    assert [w.count for w in seen] == [1, 2, 3]
    assert [w.allowed for w in seen] == [True, True, False]
    assert [w.remaining for w in seen] == [1, 0, 0]
    assert seen[0].reset == start + period
    assert seen[2].retry_after(now=start + 2) == period - 2
    assert seen[2].headers() == {"x-ratelimit-limit": "2", "x-ratelimit-remaining": "0",
                                 "x-ratelimit-reset": str(int(start + period))}
    later = rate_limit.hit(db, key, 2, period, now=start + period)
    assert later.count == 1 and later.allowed, "the next window starts afresh"
    ttl = db.ttl(keys.RATE_LIMIT(key, int(start // period)))
    assert 0 < ttl <= period + 1, "counters clean themselves up"


def test_concurrent_hits_admit_exactly_the_limit(redis_server: EmbeddedRedis) -> None:
    """Correctness without load: 40 simultaneous requests, each on its own connection, limit 10."""
    key, now = uuid.uuid4().hex, time.time()
    clients = [redis.Redis.from_url(redis_server.url) for _ in range(40)]
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        windows = list(pool.map(lambda c: rate_limit.hit(c, key, 10, 3600, now=now), clients))
    assert sorted(w.count for w in windows) == list(range(1, 41))
    assert sum(w.allowed for w in windows) == 10


def test_refusal_says_when_to_retry() -> None:
    window = rate_limit.Window(limit=30, period=600, count=31, reset=1_700_000_400)
    error = rate_limit.refusal(window, now=1_700_000_400 - 125)
    assert error.status_code == 429
    assert error.details == {"retry_after": 125}
    assert "at most 30 per 10 minutes" in error.message
    assert "Try again in 2 minutes 5 seconds (at 22:20:00 UTC)" in error.message


@pytest.fixture
def app(redis_server: EmbeddedRedis) -> Flask:
    return create_app({"redis_url": redis_server.url, "launcher": "bench", "rate_limit": 2,
                       "rate_limit_period": 3600, "trusted_proxy_hops": 1})


def _final(response: Any) -> dict[str, Any]:
    lines = [line for line in response.get_data(as_text=True).splitlines() if line.startswith("data:")]
    return dict(json.loads(lines[-1][5:]))


def test_build_api_counts_new_launches_per_address(client: Any) -> None:
    ip = fresh_ip()
    answers = [client.get(BAD_SPEC, headers={**SSE, "X-Forwarded-For": ip}) for _ in range(3)]
    assert [r.headers["x-ratelimit-remaining"] for r in answers] == ["1", "0", "0"]
    assert all(r.headers["x-ratelimit-limit"] == "2" for r in answers)
    assert [_final(r)["status_code"] for r in answers] == [400, 400, 429]
    refused = _final(answers[2])
    assert refused["phase"] == "failed" and 0 < refused["retry_after"] <= 3600
    assert "Try again in" in refused["message"]
    assert answers[2].headers["Retry-After"] == str(refused["retry_after"])
    reset = int(answers[2].headers["x-ratelimit-reset"])
    assert reset % 3600 == 0 and 0 < reset - time.time() <= 3600
    other = client.get(BAD_SPEC, headers={**SSE, "X-Forwarded-For": fresh_ip()})
    assert _final(other)["status_code"] == 400, "another address has its own allowance"


def test_off_by_default_and_no_headers(redis_server: EmbeddedRedis) -> None:
    client = create_app({"redis_url": redis_server.url, "launcher": "bench"}).test_client()
    for _ in range(5):
        response = client.get(BAD_SPEC, headers=SSE)
        assert _final(response)["status_code"] == 400
        assert "x-ratelimit-limit" not in response.headers


def test_a_reconnect_is_not_a_new_launch(app: Flask, client: Any, db: redis.Redis) -> None:
    """An address at its limit still gets the rest of its launch (Last-Event-ID), uncounted."""
    from app.extensions import events

    ip = fresh_ip()
    launch_id = uuid.uuid4().hex
    with app.app_context():
        db.set(f"bindery:launch:{launch_id}", "gh/org/only-a-user", ex=600)  # as launches.start records it
        first = events.publish({"phase": "waiting", "message": "w"}, channel=launch_id)
        events.publish({"phase": "failed", "message": "the end", "status_code": 500}, channel=launch_id)
    for _ in range(2):
        client.get(BAD_SPEC, headers={**SSE, "X-Forwarded-For": ip})
    counter = keys.RATE_LIMIT(client_key(ip), int(time.time() // 3600))
    assert db.get(counter) == "2"
    resumed = client.get(BAD_SPEC, headers={**SSE, "X-Forwarded-For": ip, "Last-Event-ID": f"{launch_id}_{first}"})
    assert _final(resumed)["message"] == "the end", "the rest of the launch, not a refusal"
    assert "x-ratelimit-limit" not in resumed.headers
    assert db.get(counter) == "2", "not counted"
