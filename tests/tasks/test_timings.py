"""Recent durations and the build queue position, on a real Redis with real Celery messages.

The queue holds messages published by Celery itself (``apply_async`` of the real build task
with no worker consuming), so the parser reads what kombu really writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask

from app import create_app
from app.redis_server import EmbeddedRedis
from tasks import timings

pytestmark = [pytest.mark.integration]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def app(own_redis: EmbeddedRedis) -> Flask:
    return create_app({"redis_url": own_redis.url, "launcher": "bench"})


@pytest.fixture
def client(own_redis: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(own_redis.url, decode_responses=True)


def test_estimate_prefers_this_repository_then_all(client: redis.Redis) -> None:
    assert timings.estimate("https://h/a", client) == {
        "build": {"seconds": None, "samples": 0, "basis": None},
        "launch": {"seconds": None, "samples": 0, "basis": None}}
    for seconds in (100, 300, 200):
        timings.record("build", "https://h/a", seconds, client)
    timings.record("build", "https://h/b", 40, client)
    timings.record("launch", "https://h/b", 5, client)
    a = timings.estimate("https://h/a", client)
    assert a["build"] == {"seconds": 200.0, "samples": 3, "basis": "repository"}
    assert a["launch"] == {"seconds": 5.0, "samples": 1, "basis": "all"}
    assert timings.estimate("https://h/new", client)["build"] == {"seconds": 150.0, "samples": 4, "basis": "all"}
    assert timings.global_median("build", client) == 150.0


def test_lists_are_capped(client: redis.Redis) -> None:
    for seconds in range(timings.REPO_SAMPLES + 10):
        timings.record("launch", "https://h/c", seconds, client)
    assert timings.estimate("https://h/c", client)["launch"]["samples"] == timings.REPO_SAMPLES
    with pytest.raises(ValueError, match="kind"):
        timings.record("compile", "https://h/c", 1, client)  # type: ignore[arg-type]


def test_record_never_fails_the_step() -> None:
    dead = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.5)
    timings.record("build", "https://h/a", 1.0, dead)  # no exception


def test_queue_position_counts_builds_ahead_in_celery_order(app: Flask, client: redis.Redis) -> None:
    from tasks.steps.build import build

    with app.app_context():
        for n, repo in enumerate(["https://h/first", "https://h/second", "https://h/third"]):
            build.s({"id": f"{n:032x}", "repo_url": repo, "image": f"i{n}", "build_id": "b"}).apply_async()
    assert client.llen("build") == 3, "the real messages wait in Celery's Redis list"
    assert timings.queue_position(f"{0:032x}", "https://h/first", client) == \
        {"queued": True, "position": 1, "length": 3}
    assert timings.queue_position(f"{2:032x}", "https://h/third", client)["position"] == 3
    # A launch following someone else's build of the same repository stands where that build is.
    assert timings.queue_position("f" * 32, "https://h/second", client)["position"] == 2
    assert timings.queue_position("f" * 32, "https://h/other", client) == \
        {"queued": False, "position": None, "length": 3}
    client.lpush("build", "not json")  # garbage never breaks the count
    assert timings.queue_position(f"{2:032x}", "https://h/third", client)["position"] == 3


def test_eta_adds_builds_ahead_own_build_and_launch() -> None:
    estimates = {"build": {"seconds": 100.0}, "launch": {"seconds": 10.0}}
    assert timings.eta_seconds({"queued": True, "position": 3}, estimates, 50.0) == 210.0
    assert timings.eta_seconds({"queued": False, "position": None}, estimates, 50.0) == 110.0
    none = {"build": {"seconds": None}, "launch": {"seconds": None}}
    assert timings.eta_seconds({"queued": True, "position": 2}, none, None) is None
