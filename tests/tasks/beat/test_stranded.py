"""A launch whose message a dying worker took is queued again, once the queue holds no copy of it.

The queue is Celery's real one on a real Redis: the test reads the message the job put there.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from app import create_app, keys
from app.extensions import redis_client
from app.redis_server import EmbeddedRedis
from tasks import launch_record
from tasks.beat.stranded import requeue_stranded


@pytest.fixture
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("stranded-redis")).start()  # its own queue to look at
    app = create_app({"redis_url": server.url, "launcher": "bench", "launch_pickup_timeout": 30})
    with app.app_context():
        yield app
    server.stop()


def _queued_ids() -> list[str]:
    messages = redis_client.client.lrange(keys.QUEUE("launch"), 0, -1)
    return [json.loads(message)["headers"]["argsrepr"] for message in messages]


def _launch(age: float) -> dict[str, Any]:
    launch = {"id": uuid.uuid4().hex, "provider": "gh", "spec": "org/repo/HEAD", "build_only": False,
              "origin": "http://127.0.0.1:8585/", "created": time.time() - age}
    launch_record.open_record(launch)
    return launch


def test_a_lost_launch_is_queued_again_and_a_young_one_is_not(app: Flask) -> None:
    lost, young = _launch(age=45), _launch(age=5)
    assert requeue_stranded.run() == 1
    queued = _queued_ids()
    assert len(queued) == 1 and lost["id"] in queued[0] and young["id"] not in queued[0]
    assert requeue_stranded.run() == 0, "the queue holds a copy now: wait for it"


def test_nothing_is_queued_again_while_the_queue_has_a_backlog(app: Flask) -> None:
    redis_client.client.delete(keys.QUEUE("launch"))
    _launch(age=45)
    redis_client.client.lpush(keys.QUEUE("launch"), json.dumps({"headers": {"argsrepr": "someone else"}}))
    assert requeue_stranded.run() == 0


def test_picked_up_or_ended_launches_are_left_alone(app: Flask) -> None:
    redis_client.client.delete(keys.QUEUE("launch"))
    picked, ended = _launch(age=45), _launch(age=45)
    assert launch_record.pick_up(picked["id"], redelivered=False)[0]
    assert launch_record.claim_end(ended["id"], launch_record.CANCELLED)
    assert requeue_stranded.run() == 0
    assert ended["id"] not in launch_record.pending_since(time.time()), "an ended launch is forgotten"
