"""Abandoned launches end to end: a client that leaves gets its launch cancelled and its
container removed; a client that comes back in time with Last-Event-ID continues it.

Real: gunicorn, both Celery workers and beat, an embedded Redis, the Podman
engine and a Jupyter container started from the local Jupyter image (the
`image` provider, engine store, no registry).  The server's command waits 8 s
before starting Jupyter, so a launch outlasts the 5 s abandon timeout.
"""

from __future__ import annotations

import json
import time
from typing import Any

import docker
import pytest
import redis
import requests

from app import keys
from tests.conftest import JUPYTER_IMAGE
from tests.stack import Stack, StackFactory, collect, read_events

pytestmark = [pytest.mark.integration, pytest.mark.engine]

ABANDON_TIMEOUT = 5
# Jupyter answers ~9 s after the container starts: longer than the abandon timeout.
SLOW_SERVER = ["sh", "-c", 'sleep 8 && exec jupyter server "$@"', "sh"]


def slow_stack_settings() -> dict[str, Any]:
    """A Bindery launching the local Jupyter image with a slow-starting server (engine store, no registry)."""
    return {
        "enabled_providers": ["image"],
        "allowed_specs": {"image": ["^localhost/bindery-jupyter:"]},
        "launch_timeout": 180,  # a slow server on a machine busy with the rest of the suite
        "launch_command": SLOW_SERVER,
        "keepalive_interval": 1,
    }


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory) -> Stack:
    return make_module_stack("abandon", {**slow_stack_settings(), "abandon_timeout": ABANDON_TIMEOUT},
                             registry=False, beat=True)


def launch_url(stack: Stack) -> str:
    return f"{stack.url}/build/image/{JUPYTER_IMAGE}"


def read_until_launching(url: str, headers: dict[str, str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Read a launch's stream until its server is starting, then hang up."""
    seen = []
    for event_id, data in read_events(url, headers=headers, timeout=60):
        if isinstance(data, dict):
            assert event_id
            seen.append((event_id, data))
            assert data["phase"] not in ("ready", "failed"), seen
            if data["phase"] == "launching":
                return seen
    raise AssertionError(f"stream ended early: {seen}")


def containers_of(engine: docker.DockerClient, launch_id: str) -> list[str]:
    """Ids of the launch's containers, from one list call (they may be removed meanwhile)."""
    return [found["Id"] for found in engine.api.containers(
        all=True, filters={"label": [f"org.bindery.launch={launch_id}"]})]


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def stream_events(stack: Stack, launch_id: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    try:
        return [json.loads(fields["data"]) for _, fields in client.xrange(keys.EVENTS(launch_id))]
    finally:
        client.close()


def test_a_launch_nobody_reads_is_cancelled_and_its_container_removed(
        stack: Stack, engine: docker.DockerClient, launched_containers: list[str]) -> None:
    seen = read_until_launching(launch_url(stack))
    left = time.monotonic()
    launch_id = seen[0][0].split("_")[0]
    launched_containers.append(launch_id)
    wait_for(lambda: containers_of(engine, launch_id), 20, "the launch's container")

    failed = wait_for(lambda: [e for e in stream_events(stack, launch_id) if e["phase"] == "failed"], 30,
                      "the launch to be cancelled")
    cancelled_after = time.monotonic() - left
    assert ABANDON_TIMEOUT - 1 <= cancelled_after <= ABANDON_TIMEOUT + 12, cancelled_after
    assert failed[0]["status_code"] == 410
    assert f"Nobody was watching this launch for {ABANDON_TIMEOUT:g} s" in failed[0]["message"]
    wait_for(lambda: not containers_of(engine, launch_id), 15, "the container to be removed")

    # The launch step was waiting for that server: it must neither announce it nor start another.
    time.sleep(12)
    assert not containers_of(engine, launch_id), "no server of a cancelled launch survives"
    phases = [e["phase"] for e in stream_events(stack, launch_id)]
    assert "ready" not in phases and phases.count("failed") == 1, phases
    # A client that comes back late hears why, and the launch does not start again.
    back = collect(launch_url(stack), headers={"Last-Event-ID": seen[-1][0]}, timeout=30)
    assert [data["phase"] for _, data in back][-1] == "failed", back
    assert back[-1][1]["status_code"] == 410
    assert {data["phase"] for _, data in back} <= {"launching", "failed"}, "what happened since, then why"


def test_a_client_that_reconnects_in_time_continues_its_launch(
        stack: Stack, engine: docker.DockerClient, launched_containers: list[str]) -> None:
    seen = read_until_launching(launch_url(stack))
    left = time.monotonic()
    launch_id = seen[0][0].split("_")[0]
    launched_containers.append(launch_id)
    time.sleep(2)
    rest = collect(launch_url(stack), headers={"Last-Event-ID": seen[-1][0]}, timeout=60)
    assert {event_id.split("_")[0] for event_id, _ in rest} == {launch_id}, "the same launch, not a new one"
    assert [data["phase"] for _, data in rest][-1] == "ready", rest
    assert time.monotonic() - left > ABANDON_TIMEOUT + 1, \
        "the launch outlasted the timeout, so only the reconnect kept it alive"
    ready = rest[-1][1]
    assert requests.get(f"{ready['url']}api", params={"token": ready["token"]}, timeout=10).status_code == 200
    assert len(containers_of(engine, launch_id)) == 1
    assert "failed" not in [e["phase"] for e in stream_events(stack, launch_id)]
