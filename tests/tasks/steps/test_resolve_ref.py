"""resolve_ref in-process: what it hands on to the registry check, and how a host's failure ends a launch.

GitHub's API cannot be reached here, so the failure cases answer from a loopback server that
plays GitHub's status codes; the success case uses a Software Heritage id, which resolves with
no network at all.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from app import keys
from app.extensions import redis_client
from tasks.steps.resolve_ref import resolve_ref
from tests.tasks.steps.conftest import events_of, payload

SWH = "swh:1:rev:" + "ab" * 20


@pytest.fixture
def github(step_app: Flask) -> Iterator[dict[str, Any]]:
    """A loopback 'GitHub API' answering every request with the status in ``answer['status']``."""
    answer: dict[str, Any] = {"status": 400}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(answer["status"])
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"message": "replayed"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    step_app.config["BINDERY"] = {**step_app.config["BINDERY"],
                                  "github_api_url": f"http://127.0.0.1:{server.server_port}"}
    yield answer
    server.shutdown()
    server.server_close()


def test_hands_the_resolved_launch_to_the_registry_check(step_app: Flask, taken: list) -> None:
    launch = payload(provider="swh", spec=SWH)
    resolve_ref(launch)
    [(transition, handed)] = taken
    assert transition == "resolved"
    assert handed["resolved_ref"] == SWH and handed["resolved_spec"] == SWH
    assert handed["image"].startswith("bindery-swh-2d1-2drev-2dabab")
    assert handed["image"].endswith(":swh-1-rev-" + "ab" * 20), "the tag is the ref, colons escaped"
    assert handed["log_path"] == f"/logs/swh/{SWH}"
    assert handed["quota"] == step_app.config["BINDERY"]["quota_per_repo"]
    assert events_of(launch["id"]) == [], "resolving says nothing unless there is a notice"


def test_a_host_that_refuses_ends_the_launch_and_marks_an_outage(github: dict[str, Any], taken: list) -> None:
    redis_client.client.delete(keys.OUTAGE("gh"))
    launch = payload()
    resolve_ref(launch)
    assert taken == []
    [event] = events_of(launch["id"])
    assert event["phase"] == "failed" and event["status_code"] == 502
    assert "answered 400" in event["message"] and event["message"].endswith("\n")
    assert redis_client.client.exists(keys.OUTAGE("gh")), "/health looks into GitHub from now on"


def test_a_missing_repository_is_a_404_and_no_outage(github: dict[str, Any], taken: list) -> None:
    redis_client.client.delete(keys.OUTAGE("gh"))
    github["status"] = 404
    launch = payload(spec="org/missing/HEAD")
    resolve_ref(launch)
    [event] = events_of(launch["id"])
    assert (event["phase"], event["status_code"]) == ("failed", 404)
    assert taken == [] and not redis_client.client.exists(keys.OUTAGE("gh"))


def test_a_payload_that_is_not_a_launch_is_refused(step_app: Flask, taken: list) -> None:
    """A message that fails the payload schema never reaches the step (nothing to report to)."""
    from marshmallow import ValidationError

    with pytest.raises(ValidationError):
        resolve_ref({"id": "not-a-launch-id", "provider": "gh", "spec": "x", "created": 0})
    assert taken == []
