"""check_registry in-process: launch what is there, build what is not (once), follow who builds it."""

from __future__ import annotations

import pytest
from flask import Flask

from app.extensions import redis_client
from app.keys import build_channel
from tasks.lock import BuildLock
from tasks.steps.check_registry import check_registry
from tests.tasks.steps.conftest import Store, events_of, resolved_payload


def test_an_image_that_is_there_is_launched(step_app: Flask, store: Store, taken: list) -> None:
    launch = resolved_payload()
    store.images.add(launch["image"])
    check_registry(launch)
    assert [name for name, _ in taken] == ["image_found"]
    assert events_of(launch["id"]) == [{"phase": "built", "imageName": launch["image"],
                                        "message": "Found built image, launching...\n"}]
    assert BuildLock(redis_client.client, launch["image"]).holder() is None, "no build, no lock"


@pytest.mark.parametrize("registry_url", ["", "http://127.0.0.1:5000"])
def test_a_missing_image_is_built_once_by_the_first_launch(step_app: Flask, store: Store, taken: list,
                                                            registry_url: str) -> None:
    step_app.config["BINDERY"] = {**step_app.config["BINDERY"], "registry_url": registry_url}
    launch = resolved_payload()
    check_registry(launch)
    [(name, handed)] = taken
    assert name == "build_needed" and handed["push"] is bool(registry_url), "push only with a registry"
    lock = BuildLock(redis_client.client, launch["image"])
    assert lock.holder() == handed["build_id"], "the build lock names the build"
    assert [event["phase"] for event in events_of(build_channel(handed["build_id"]))] == ["waiting"]
    lock.release(handed["build_id"])


def test_a_second_launch_follows_the_build_under_way(step_app: Flask, store: Store, taken: list) -> None:
    launch = resolved_payload()
    lock = BuildLock(redis_client.client, launch["image"])
    assert lock.acquire("b" * 32, ttl=60)
    check_registry(launch)
    assert taken == [("build_elsewhere", {**launch, "build_id": "b" * 32})]
    assert "following its build" in events_of(launch["id"])[-1]["message"]
    lock.release("b" * 32)


def test_a_missing_prebuilt_image_fails_with_404_and_never_builds(step_app: Flask, store: Store,
                                                                   taken: list) -> None:
    launch = resolved_payload(provider="image", image="127.0.0.1:5000/nothing:here")
    check_registry(launch)
    assert taken == []
    [event] = events_of(launch["id"])
    assert (event["phase"], event["status_code"]) == ("failed", 404)
    assert "never builds" in event["message"]
