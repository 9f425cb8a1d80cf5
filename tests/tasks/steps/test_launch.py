"""launch in-process: the ``ready`` event a BinderHub client reads, ``build_only``, and a cancelled launch."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from app import keys
from app.extensions import redis_client
from app.launch_events import REDIS_STREAM
from tasks import backends, launch_record
from tasks.steps.launch import launch as launch_step
from tests.tasks.steps.conftest import events_of, resolved_payload


def test_ready_carries_what_binderhub_clients_read(step_app: Flask) -> None:
    launch = resolved_payload()
    launch_step(launch)
    launching, ready = events_of(launch["id"])
    assert launching["phase"] == "launching"
    assert ready["phase"] == "ready" and ready["url"] == f"http://127.0.0.1:9/bench/{launch['id']}/"
    assert len(ready["token"]) == 32 and ready["image"] == launch["image"]
    assert ready["binder_ref_url"] == launch["ref_url"] and ready["repo_url"] == launch["repo_url"]
    assert ready["binder_request"] == "http://127.0.0.1:8585/v2/gh/org/repo/HEAD"
    assert ready["binder_persistent_request"] == f"http://127.0.0.1:8585/v2/gh/{launch['resolved_spec']}"
    assert launch_record.ended(launch["id"]) == "ready"


def test_an_older_message_without_resolved_spec_still_gets_its_persistent_link(step_app: Flask) -> None:
    launch = resolved_payload(resolved_spec=None)
    launch_step(launch)
    assert events_of(launch["id"])[-1]["binder_persistent_request"].endswith(f"/v2/gh/org/repo/{'a' * 40}")


def test_build_only_ends_with_the_image_and_starts_nothing(step_app: Flask) -> None:
    launch = resolved_payload(build_only=True)
    launch_step(launch)
    assert events_of(launch["id"]) == [{"phase": "ready", "imageName": launch["image"],
                                        "message": "Image built; not launching (build_only).\n"}]


def test_a_launch_cancelled_while_its_server_started_removes_it(step_app: Flask,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    stopped: list[str] = []

    class CancelledMeanwhile:
        def launch(self, launch: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> tuple[str, str]:
            assert launch_record.claim_end(launch["id"], launch_record.CANCELLED)  # the abandon sweep won
            return "http://127.0.0.1:9/x/", "t"

        def stop(self, launch_id: str) -> int:
            stopped.append(launch_id)
            return 1

    monkeypatch.setattr(backends, "launcher", lambda config: CancelledMeanwhile())
    launch = resolved_payload()
    launch_step(launch)
    assert stopped == [launch["id"]]
    assert [event["phase"] for event in events_of(launch["id"])] == ["launching"], "no ready for nobody"


def test_a_launch_that_ended_before_its_step_ran_is_skipped(step_app: Flask) -> None:
    launch = resolved_payload()
    assert launch_record.claim_end(launch["id"], launch_record.CANCELLED)
    launch_step(launch)
    assert events_of(launch["id"]) == []


def test_a_push_s_build_moves_its_links_warm_pools_to_the_new_image(step_app: Flask) -> None:
    """The pool follows the pushed commit when its build is done, not at the next click (app/hooks.py)."""
    config = step_app.config["BINDERY"]
    step_app.config["BINDERY"] = {**config, "launcher": "docker", "warm_pool": {"gh/org/repo/main": 1},
                                  "launch_event_sinks": ["redis"]}
    client = redis_client.client
    client.delete(keys.POOL_TARGETS(), "launch")
    launch = resolved_payload(build_only=True, spec=f"org/repo/{'a' * 40}", trigger="push",
                              pool_specs=["gh/org/repo/main", "gh/org/repo/HEAD"])
    try:
        launch_step(launch)
        target = json.loads(client.hget(keys.POOL_TARGETS(), "gh/org/repo/main"))
        assert target["image"] == launch["image"], "the configured link's pool now holds the pushed image"
        assert client.hget(keys.POOL_TARGETS(), "gh/org/repo/HEAD") is None, "HEAD has no pool here"
        [refill] = [json.loads(raw) for raw in client.lrange("launch", 0, -1)]
        assert refill["headers"]["task"] == "bindery.warm_pool_fill"
        assert json.loads(base64.b64decode(refill["body"]))[0] == [launch["image"]], "queued at once"
        [(_, fields)] = client.xrevrange(REDIS_STREAM, count=1)
        event = json.loads(fields["event"])
        assert (event["trigger"], event["spec"], event["status"]) == ("push", launch["spec"], "success")
    finally:
        client.delete(keys.POOL_TARGETS(), "launch")


def test_a_click_s_build_only_launch_touches_no_pool(step_app: Flask) -> None:
    step_app.config["BINDERY"] = {**step_app.config["BINDERY"], "launcher": "docker",
                                  "warm_pool": {"gh/org/repo/HEAD": 1}}
    redis_client.client.delete(keys.POOL_TARGETS())
    launch_step(resolved_payload(build_only=True))
    assert redis_client.client.hgetall(keys.POOL_TARGETS()) == {}
