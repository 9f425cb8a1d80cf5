"""launch in-process: the ``ready`` event a BinderHub client reads, ``build_only``, and a cancelled launch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

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
