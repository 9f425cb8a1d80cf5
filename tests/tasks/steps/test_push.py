"""push in-process: push what the registry lacks, then say ``built`` and give the lock back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from app.extensions import redis_client
from app.keys import build_channel
from tasks import backends
from tasks.lock import BuildLock
from tasks.steps.push import push
from tests.tasks.steps.conftest import Store, events_of, resolved_payload


class Pusher:
    def __init__(self) -> None:
        self.pushed: list[str] = []

    def push(self, image: str, emit: Callable[[dict[str, Any]], None]) -> None:
        emit({"phase": "pushing", "message": "Pushing image\n", "progress": {"layer": "Pushed"}})
        self.pushed.append(image)


@pytest.fixture
def pusher(monkeypatch: pytest.MonkeyPatch) -> Pusher:
    made = Pusher()
    monkeypatch.setattr(backends, "pusher", lambda config: made)
    return made


@pytest.mark.parametrize("already_there", [False, True])
def test_push_then_built(step_app: Flask, store: Store, pusher: Pusher, already_there: bool) -> None:
    launch = resolved_payload(build_id=("4" if already_there else "3") * 32)
    lock = BuildLock(redis_client.client, launch["image"])
    assert lock.acquire(launch["build_id"], ttl=60)
    if already_there:  # a push re-run after its worker died, once the image had arrived
        store.images.add(launch["image"])
    assert push(launch) == launch
    assert pusher.pushed == ([] if already_there else [launch["image"]])
    phases = [event["phase"] for event in events_of(build_channel(launch["build_id"]))]
    assert phases == (["built"] if already_there else ["pushing", "built"])
    assert lock.holder() is None
