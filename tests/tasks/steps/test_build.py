"""build in-process: repo2docker's place is taken by a builder handed in, everything else is real.

What counts is what everyone following the build hears on its channel, the build log kept at
its URL, and that the build lock is given back whatever happens.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery.exceptions import Ignore
from flask import Flask

from app.build_log_store import read
from app.errors import BuildError
from app.extensions import redis_client
from app.keys import build_channel
from tasks import backends
from tasks.lock import BuildLock
from tasks.steps import build as build_module
from tests.tasks.steps.conftest import events_of, resolved_payload


class Builder:
    def __init__(self, lines: list[str], error: BuildError | None = None) -> None:
        self.lines, self.error, self.built = lines, error, []

    def build(self, repo: Any, launch: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> None:
        for line in self.lines:
            emit({"phase": "building", "message": line})
        if self.error:
            raise self.error
        self.built.append((repo.repo_url(), launch["image"]))


@pytest.fixture
def builder(monkeypatch: pytest.MonkeyPatch) -> Builder:
    made = Builder(["Step 1/2 : FROM base\n", "Step 2/2 : COPY . .\n"])
    monkeypatch.setattr(backends, "builder", lambda config: made)
    monkeypatch.setattr(build_module, "_image_in_engine", lambda image: False)
    return made


def _locked_launch() -> dict[str, Any]:
    launch = resolved_payload(build_id=uuid.uuid4().hex)
    assert BuildLock(redis_client.client, launch["image"]).acquire(launch["build_id"], ttl=60)
    return launch


def test_a_build_without_registry_ends_built_and_keeps_its_log(step_app: Flask, builder: Builder) -> None:
    launch = _locked_launch()
    assert build_module.build(launch) == launch, "the chain hands the launch on to push"
    assert builder.built == [("https://github.com/org/repo", launch["image"])]
    phases = [event["phase"] for event in events_of(build_channel(launch["build_id"]))]
    assert phases == ["building", "building", "built"]
    meta, text = read(redis_client.client, launch["log_path"])
    assert meta["status"] == "built" and "Step 2/2 : COPY . .\n" in text
    assert BuildLock(redis_client.client, launch["image"]).holder() is None, "released for the next request"


def test_with_a_registry_the_build_leaves_built_to_push(step_app: Flask, builder: Builder) -> None:
    step_app.config["BINDERY"] = {**step_app.config["BINDERY"], "registry_url": "http://127.0.0.1:5000"}
    launch = _locked_launch()
    build_module.build(launch)
    assert [event["phase"] for event in events_of(build_channel(launch["build_id"]))] == ["building", "building"]
    assert BuildLock(redis_client.client, launch["image"]).holder() == launch["build_id"], "push still holds it"
    BuildLock(redis_client.client, launch["image"]).release(launch["build_id"])


def test_a_failed_build_tells_everyone_where_its_log_is(step_app: Flask, builder: Builder) -> None:
    builder.error = BuildError("repo2docker exited with 1")
    launch = _locked_launch()
    with pytest.raises(Ignore):  # the chain ends here: push never runs
        build_module.build(launch)
    failed = events_of(build_channel(launch["build_id"]))[-1]
    assert failed["phase"] == "failed" and failed["status_code"] == 500
    assert failed["log_url"] == launch["origin"] + launch["log_path"].lstrip("/")
    assert read(redis_client.client, launch["log_path"])[0]["status"] == "failed"
    assert BuildLock(redis_client.client, launch["image"]).holder() is None


def test_a_late_redelivery_whose_lock_moved_on_does_nothing(step_app: Flask, builder: Builder) -> None:
    launch = resolved_payload(build_id="1" * 32)
    lock = BuildLock(redis_client.client, launch["image"])
    assert lock.acquire("2" * 32, ttl=60)  # someone else builds it now
    with pytest.raises(Ignore):
        build_module.build(launch)
    assert builder.built == [] and events_of(build_channel(launch["build_id"])) == []
    lock.release("2" * 32)
