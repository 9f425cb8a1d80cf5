"""A launch worker killed (SIGKILL) mid-launch: the launch is retried, or failed clearly, and no
container of it outlives the launch.

Real: gunicorn, both Celery workers, an embedded Redis, the Podman engine and
Jupyter containers from the local Jupyter image.  The gevent launch worker is
killed by its pid while the launch step waits for its server (whose command
waits 8 s before starting Jupyter), then a new launch worker is started the
way the Stack starts it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

import docker
import pytest
import requests

from tests.stack import ROOT, Stack, StackFactory, read_events
from tests.system.test_abandon import containers_of, launch_url, slow_stack_settings, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.engine]

VISIBILITY = 5


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory) -> Stack:
    return make_module_stack("crash", {
        **slow_stack_settings(), "launch_visibility_timeout": VISIBILITY, "launch_crash_retries": 1,
    }, registry=False)


def kill_and_restart_launch_worker(stack: Stack) -> float:
    """SIGKILL the launch worker, start a new one like it; returns when it was killed."""
    old = stack.processes["launch"]
    os.kill(old.pid, signal.SIGKILL)
    killed = time.monotonic()
    old.wait(10)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINDERY_") and k != "REDIS_URL"}
    env.update({"BINDERY_CONFIG": str(stack.directory / "bindery.yaml"), "PYTHONUNBUFFERED": "1",
                "PROMETHEUS_MULTIPROC_DIR": str(stack.directory / "prometheus")})
    path = stack.directory / "launch.log"
    start = path.stat().st_size
    log = open(path, "ab")
    stack._logs.append(log)
    stack.processes["launch"] = subprocess.Popen(old.args, cwd=ROOT, env=env, stdout=log,
                                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wait_for(lambda: b"ready." in path.read_bytes()[start:], 60, "the new launch worker")
    return killed


class Follower:
    """One client reading a launch's stream across the crash (the web stays up)."""

    def __init__(self, url: str) -> None:
        self.stream = read_events(url, timeout=120)
        self.events: list[dict[str, Any]] = []
        self.launch_id = ""

    def until(self, done: Any, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event_id, data in self.stream:  # keepalives every second: the deadline is checked often
            assert time.monotonic() < deadline, f"nothing new for {timeout} s: {self.events}"
            if isinstance(data, dict):
                self.launch_id = self.launch_id or (event_id or "").split("_")[0]
                self.events.append(data)
                if done(data) or data["phase"] in ("ready", "failed"):
                    return data
        raise AssertionError(f"stream ended: {self.events}")


def launching(data: dict[str, Any]) -> bool:
    return data["phase"] == "launching" and data["message"] == "Launching server...\n"


def retrying(data: dict[str, Any]) -> bool:
    return "stopped; retrying" in data.get("message", "")


def test_a_killed_launch_worker_s_launch_is_retried_and_replaces_its_container(
        stack: Stack, engine: docker.DockerClient, launched_containers: list[str]) -> None:
    client = Follower(launch_url(stack))
    client.until(launching)
    launched_containers.append(client.launch_id)
    first = wait_for(lambda: containers_of(engine, client.launch_id), 20, "the first container")[0]
    killed = kill_and_restart_launch_worker(stack)

    notice = client.until(retrying)
    assert retrying(notice), client.events
    assert time.monotonic() - killed < VISIBILITY + 30, "delivered again within the visibility timeout"
    ready = client.until(lambda data: False)
    assert ready["phase"] == "ready", [event["message"] for event in client.events[-4:]]
    assert requests.get(f"{ready['url']}api", params={"token": ready["token"]}, timeout=10).status_code == 200
    left = containers_of(engine, client.launch_id)
    assert len(left) == 1 and left != [first], "the orphan was replaced, not kept"
    assert [e["phase"] for e in client.events].count("ready") == 1


def test_a_launch_that_keeps_killing_its_worker_fails_clearly_and_leaves_nothing(
        stack: Stack, engine: docker.DockerClient, launched_containers: list[str]) -> None:
    client = Follower(launch_url(stack))
    client.until(launching)
    launched_containers.append(client.launch_id)
    wait_for(lambda: containers_of(engine, client.launch_id), 20, "the first container")
    kill_and_restart_launch_worker(stack)
    client.until(retrying)
    client.until(launching)  # the retry reached the server again: kill it there too
    wait_for(lambda: containers_of(engine, client.launch_id), 20, "the retry's container")
    kill_and_restart_launch_worker(stack)

    final = client.until(lambda data: False)
    assert final["phase"] == "failed" and final["status_code"] == 503, client.events
    assert "stopped unexpectedly (delivered 3 times)" in final["message"]
    assert "try again later" in final["message"]
    wait_for(lambda: not containers_of(engine, client.launch_id), 15, "the container to be removed")
    time.sleep(3)
    assert not containers_of(engine, client.launch_id), "no server of a failed launch survives"
    assert "ready" not in [e["phase"] for e in client.events]
