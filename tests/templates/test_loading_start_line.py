"""The loading page shows a launch's place in the line of server starts, in real headless Chromium.

The app from its factory on a threaded WSGI server with an embedded Redis and no Celery worker: the
launch stays ``waiting`` until the test publishes, on its channel, the events a launch worker's
docker launcher sends while the launch waits its turn (tasks/lock.py, ``StartLine``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from app import create_app
from app.extensions import events
from app.redis_server import EmbeddedRedis
from tasks.lock import starting_message


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Flask]]:
    redis = EmbeddedRedis(tmp_path_factory.mktemp("start-line-redis")).start()
    app = create_app({"redis_url": redis.url, "launcher": "bench"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", app
    server.shutdown()
    thread.join(10)
    redis.stop()


def test_the_page_shows_how_many_servers_start_before_yours_until_yours_starts(
        page: Any, served: tuple[str, Flask]) -> None:
    url, app = served
    page.goto(f"{url}/v2/gh/org/project/HEAD")
    page.wait_for_function("document.body.dataset.launchId", timeout=30_000)
    launch_id = page.evaluate("document.body.dataset.launchId")
    assert page.is_hidden("#start-line")

    def publish(event: dict[str, Any]) -> None:
        with app.app_context():
            events.publish(event, channel=launch_id)

    publish({"phase": "built", "message": "Found built image, launching...\n"})
    publish({"phase": "launching", "message": starting_message(2), "ahead": 2})
    page.wait_for_function("document.getElementById('start-ahead').textContent === '2'", timeout=10_000)
    assert page.is_visible("#start-line")
    assert "2 servers are starting before yours" in page.text_content("#log")
    publish({"phase": "launching", "message": starting_message(0), "ahead": 0})
    page.wait_for_function("document.getElementById('start-ahead').textContent.includes('next')", timeout=10_000)
    publish({"phase": "launching", "message": "Your turn: starting your server...\n"})
    page.wait_for_function("document.getElementById('start-line').hidden", timeout=10_000)
    assert page.get_attribute("body", "data-phase") == "launching"
