"""attach in-process: relay a build's stream to the launch, then take the path its end calls for."""

from __future__ import annotations

import threading
import time

from flask import Flask, current_app

from app.extensions import events, redis_client
from app.keys import build_channel
from tasks.lock import BuildLock
from tasks.steps.attach import attach
from tests.tasks.steps.conftest import events_of, resolved_payload


def _following(launch: dict, *build_events: dict, delay: float = 0.3) -> None:
    """Publish the build's events from another thread while the step follows them."""
    def publish(flask_app: Flask) -> None:
        with flask_app.app_context():
            time.sleep(delay)
            for event in build_events:
                events.publish(event, channel=build_channel(launch["build_id"]))

    threading.Thread(target=publish, args=(current_app._get_current_object(),),  # type: ignore[attr-defined]
                     daemon=True).start()


def test_relays_the_log_then_launches_when_built(step_app: Flask, taken: list) -> None:
    launch = resolved_payload(build_id="c" * 32)
    _following(launch, {"phase": "building", "message": "Step 1/3\n"},
               {"phase": "built", "imageName": launch["image"], "message": "Built image, launching...\n"})
    attach(launch)
    assert [name for name, _ in taken] == ["built"]
    assert [(event["phase"], event["message"]) for event in events_of(launch["id"])] == [
        ("building", "Step 1/3\n"), ("built", "Built image, launching...\n")]


def test_a_failed_build_fails_the_launch_when_no_last_good_image(step_app: Flask, taken: list) -> None:
    launch = resolved_payload(build_id="d" * 32)
    _following(launch, {"phase": "failed", "status_code": 500, "message": "repo2docker said no\n"})
    attach(launch)
    assert taken == []
    assert events_of(launch["id"])[-1] == {"phase": "failed", "status_code": 500, "message": "repo2docker said no\n"}


def test_a_build_that_stops_without_a_word_starts_over(step_app: Flask, taken: list) -> None:
    """Its worker died: nothing arrives and nobody holds the lock any more."""
    launch = resolved_payload(build_id="e" * 32)
    assert BuildLock(redis_client.client, launch["image"]).holder() is None
    started = time.monotonic()
    attach(launch)
    assert [name for name, _ in taken] == ["build_stopped"]
    assert time.monotonic() - started >= step_app.config["BINDERY"]["build_lock_ttl"] / 3
    assert "stopped" in events_of(launch["id"])[-1]["message"]
