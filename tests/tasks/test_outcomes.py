"""How a launch ends: one failed event on each channel, the launch counted, servers removed best effort."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask

from app import create_app, keys
from app.errors import NotFound
from app.extensions import redis_client
from app.metrics import metrics
from app.redis_server import EmbeddedRedis
from tasks import backends, outcomes


@pytest.fixture
def app(redis_server: EmbeddedRedis) -> Iterator[Flask]:
    app = create_app({"redis_url": redis_server.url, "launcher": "bench"})
    with app.app_context():
        yield app


def _events(channel: str) -> list[dict]:
    return [json.loads(fields["data"]) for _, fields in redis_client.client.xrange(keys.EVENTS(channel))]


def test_a_failed_launch_is_told_on_every_channel_and_counted(app: Flask) -> None:
    launch = {"id": uuid.uuid4().hex, "provider": "gh", "spec": "org/repo/HEAD", "created": time.time() - 2}
    other = f"build:{uuid.uuid4().hex}"
    counter = metrics().launch_count.labels(status="failure", provider="gh", repo="org/repo/HEAD")
    before = counter._value.get()
    outcomes.launch_failed(launch, NotFound("no such repository", ref="HEAD"), other)
    expected = {"phase": "failed", "status_code": 404, "message": "no such repository\n", "ref": "HEAD"}
    assert _events(launch["id"]) == _events(other) == [expected]
    assert counter._value.get() == before + 1


def test_removing_servers_never_raises(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    class Away:
        def stop(self, launch_id: str) -> int:
            raise ConnectionError("the engine is away")

    monkeypatch.setattr(backends, "launcher", lambda config: Away())
    outcomes.stop_servers(uuid.uuid4().hex)  # logged, not raised: the cleanup beat job catches the rest
