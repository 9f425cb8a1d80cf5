"""The cleanup beat jobs ask the configured backend to remove what outlived its age."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from app import create_app
from app.redis_server import EmbeddedRedis
from tasks import backends
from tasks.beat.cleanup import cleanup_servers


@pytest.fixture
def app(redis_server: EmbeddedRedis) -> Iterator[Flask]:
    app = create_app({"redis_url": redis_server.url, "launcher": "bench", "launch_max_age": 1234})
    with app.app_context():
        yield app


def test_cleanup_servers_passes_the_configured_age(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[float] = []

    class Launcher:
        def cleanup(self, max_age: float) -> int:
            asked.append(max_age)
            return 2

    monkeypatch.setattr(backends, "launcher", lambda config: Launcher())
    assert cleanup_servers.run() == 2
    assert asked == [1234]
