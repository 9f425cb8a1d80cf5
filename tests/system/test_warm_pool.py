"""The warm pool on a whole Bindery (web, workers, beat, Redis, engine): the beat task fills it, a launch
gets a pooled server through the ordinary event stream, the pool is refilled, and /health, the launch
events and the metrics show it.  One stack for the module; the image is the local Jupyter image,
launched through the `image` provider (no build)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest
import redis
import requests

from app.keys import LAUNCH_EVENTS
from tasks.backends.docker_launcher import INSTANCE
from tests.conftest import JUPYTER_IMAGE
from tests.stack import Stack, StackFactory, collect

pytestmark = [pytest.mark.integration, pytest.mark.engine]


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory, engine: docker.DockerClient) -> Iterator[Stack]:
    running = make_module_stack("pool", {
        "enabled_providers": ["gh", "git", "image"], "allowed_specs": {"image": [r"^localhost/bindery-jupyter:.*$"]},
        "warm_pool": {JUPYTER_IMAGE: 2}, "warm_pool_interval": 1, "default_url": "/",
        "launch_event_sinks": ["redis"], "keepalive_interval": 1, "health_cache_seconds": 0,
    }, registry=False, beat=True)
    yield running
    running.stop_role("beat")  # no refill from here on; then the servers this module's stack started
    instance = running.settings["instance_name"]
    for container in engine.containers.list(ignore_removed=True,
            all=True, filters={"label": [f"{INSTANCE}={instance}"]}):
        container.remove(force=True)


def pool_check(stack: Stack) -> dict[str, Any]:
    checks = requests.get(f"{stack.url}/health", timeout=30).json()["checks"]
    return next(check for check in checks if check["service"] == "Warm pool")


def wait_pooled(stack: Stack, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while pool_check(stack)["pooled"] < count:
        assert time.monotonic() < deadline, f"the pool never reached {count}: {pool_check(stack)}"
        time.sleep(0.3)


def launch(stack: Stack) -> tuple[float, list[dict[str, Any]]]:
    started = time.monotonic()
    events = collect(f"{stack.url}/build/image/{JUPYTER_IMAGE}", timeout=120)
    return time.monotonic() - started, [data for _, data in events]


def test_a_launch_takes_a_pooled_server_and_the_pool_refills(stack: Stack) -> None:
    wait_pooled(stack, 2)
    assert pool_check(stack)["images"] == {JUPYTER_IMAGE: 2} and pool_check(stack)["ok"]
    took, events = launch(stack)
    ready = events[-1]
    assert ready["phase"] == "ready", events
    assert "Server taken from the warm pool (already started).\n" in [e["message"] for e in events]
    assert took < 3, f"a pool hit took {took:.2f} s"
    assert requests.get(f"{ready['url']}api/contents", params={"token": ready["token"]}, timeout=5).status_code == 200
    # nobody else's token opens it
    assert requests.get(f"{ready['url']}api/contents", params={"token": "0" * 48}, timeout=5).status_code == 403
    wait_pooled(stack, 2)  # refilled in the background

    store = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    recorded = [json.loads(fields["event"]) for _, fields in store.xrange(LAUNCH_EVENTS())]
    assert recorded[-1]["pool"] == "hit" and recorded[-1]["status"] == "success"
    metrics = requests.get(f"{stack.url}/metrics", timeout=10).text
    assert 'bindery_warm_pool_launches_total{result="hit"}' in metrics
