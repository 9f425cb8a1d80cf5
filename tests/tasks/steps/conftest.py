"""Steps driven in-process: a real Redis, injected backends, and the chain's transitions recorded.

Each step test calls the real Celery task (through BinderyTask, so the app context, the payload
check and failures-as-events run as in a worker) and looks at what a person's browser would be
sent (the events on the launch's channel) and at which transition of tasks/chain.py it took.
No container engine is needed: backends are small fakes handed in through tasks.backends.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from app import create_app
from app.extensions import redis_client
from app.keys import EVENTS
from app.redis_server import EmbeddedRedis
from tasks import backends, chain

TRANSITIONS = ("resolved", "image_found", "build_needed", "build_elsewhere", "built", "last_good_found",
               "build_stopped")


class Store:
    """An image store that knows the images it was given (the registry's exists, nothing else)."""

    def __init__(self, *images: str) -> None:
        self.images = set(images)
        self.asked: list[str] = []

    def exists(self, image: str) -> bool:
        self.asked.append(image)
        return image in self.images


@pytest.fixture
def step_app(redis_server: EmbeddedRedis) -> Iterator[Flask]:
    app = create_app({"redis_url": redis_server.url, "launcher": "bench", "build_lock_ttl": 5,
                      "abandon_timeout": 0})
    with app.app_context():
        yield app


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every chain transition a step takes, as (name, launch), instead of running the next step."""
    seen: list[tuple[str, dict[str, Any]]] = []
    for name in TRANSITIONS:
        monkeypatch.setattr(chain, name, lambda launch, _name=name, **kw: seen.append((_name, {**launch, **kw})))
    return seen


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Store:
    found = Store()
    monkeypatch.setattr(backends, "image_store", lambda config: found)
    return found


def payload(**extra: Any) -> dict[str, Any]:
    """A launch as the web queues it, plus what earlier steps filled in."""
    return {"id": uuid.uuid4().hex, "provider": "gh", "spec": "org/repo/HEAD", "build_only": False,
            "origin": "http://127.0.0.1:8585/",
            "created": time.time(), **extra}


def resolved_payload(**extra: Any) -> dict[str, Any]:
    ref = "a" * 40
    return payload(**{"resolved_ref": ref, "resolved_spec": f"org/repo/{ref}",
                      "repo_url": "https://github.com/org/repo", "ref_url": f"https://github.com/org/repo/tree/{ref}",
                      "image": f"127.0.0.1:5000/bindery-org-repo:{ref}", "log_path": f"/logs/gh/org/repo/{ref}",
                      **extra})


def events_of(channel: str) -> list[dict[str, Any]]:
    """The events a client of ``channel`` receives, in order."""
    return [json.loads(fields["data"]) for _, fields in redis_client.client.xrange(EVENTS(channel))]
