"""may_run at a launch's first message: one copy runs, however many were queued."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from flask import Flask

from app import create_app
from app.redis_server import EmbeddedRedis
from tasks import chain, launch_record
from tasks.worker_lease import may_run


@pytest.fixture
def app(redis_server: EmbeddedRedis) -> Iterator[Flask]:
    app = create_app({"redis_url": redis_server.url, "launcher": "bench"})
    with app.app_context():
        yield app


def _delivered(task: str, redelivered: bool = False) -> SimpleNamespace:
    return SimpleNamespace(task=task, delivery_info={"redelivered": redelivered})


def test_only_the_first_copy_of_a_first_message_runs(app: Flask) -> None:
    launch = {"id": uuid.uuid4().hex, "provider": "gh", "spec": "o/r/HEAD", "created": time.time()}
    launch_record.open_record(launch)
    assert may_run(_delivered(chain.RESOLVE_REF), launch)
    assert not may_run(_delivered(chain.RESOLVE_REF), launch), "the requeued copy of a slow message"
    assert may_run(_delivered(chain.ATTACH), launch), "later messages of the launch are not copies"
    assert may_run(SimpleNamespace(task=chain.CHECK_REGISTRY, delivery_info=None), launch), "in-process steps run"
