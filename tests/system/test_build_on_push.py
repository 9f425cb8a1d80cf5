"""Build on push on a whole Bindery (web, workers, Redis, registry, engine) with loopback git repositories.

One stack for the module.  A push signed as GitHub signs it (GitHub Enterprise's shape: the
repository is on a host that is not github.com, so it builds with the git provider) starts
the build; the warm pool configured for the branch's link follows the new image without a
click; the next click has no ``building`` phase and is a pool hit.  A second repository of
the same kind, clicked without a hook, is the comparison (same stack, same run).  The figures
are printed (``-s`` shows them); bench/build_on_push.py measures them several times.
"""

from __future__ import annotations

import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from tasks.backends.docker_launcher import INSTANCE
from tests.conftest import JUPYTER_IMAGE, GitServer
from tests.hook_payloads import encode, github_headers, github_push
from tests.stack import Stack, StackFactory, collect

pytestmark = [pytest.mark.integration, pytest.mark.engine]

SECRET = "system-hook-secret-" + uuid.uuid4().hex


def dockerfile() -> str:
    """A launchable image whose one step no other build has cached."""
    return f"FROM {JUPYTER_IMAGE}\nRUN echo {uuid.uuid4().hex} > /tmp/build-id\n"


@pytest.fixture(scope="module")
def repos(git_server: GitServer) -> dict[str, tuple[str, str]]:
    """name -> (clone URL, sha of main): ``hooked`` builds on push, ``clicked`` only when clicked."""
    return {name: git_server.make_repo(dockerfile()) for name in ("hooked", "clicked")}


def link(clone_url: str) -> str:
    return f"git/{urllib.parse.quote(clone_url, safe='')}/main"


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory, engine: docker.DockerClient, repos: dict[str, tuple[str, str]],
          build_counter: tuple[Path, list[str]]) -> Iterator[Stack]:
    running = make_module_stack("push", {
        "webhook_secret": SECRET, "repo2docker_command": build_counter[1], "warm_pool": {link(repos["hooked"][0]): 1},
        "launch_event_sinks": ["redis"], "keepalive_interval": 1, "launch_timeout": 120, "default_url": "/",
        "health_cache_seconds": 0})
    yield running
    instance = running.settings["instance_name"]  # the servers this module's stack started, pooled or not
    for container in engine.containers.list(ignore_removed=True, all=True,
                                             filters={"label": [f"{INSTANCE}={instance}"]}):
        container.remove(force=True)


def click(stack: Stack, clone_url: str) -> tuple[float, list[dict[str, Any]]]:
    started = time.monotonic()
    events = [data for _, data in collect(f"{stack.url}/build/{link(clone_url)}", timeout=600)]
    return time.monotonic() - started, events


def pooled(stack: Stack) -> dict[str, int]:
    checks = requests.get(f"{stack.url}/health", timeout=30).json()["checks"]
    return next(check for check in checks if check["service"] == "Warm pool")["images"]  # type: ignore[no-any-return]


def test_a_signed_push_builds_and_the_next_click_finds_its_image_and_a_warm_server(
        stack: Stack, repos: dict[str, tuple[str, str]], build_counter: tuple[Path, list[str]]) -> None:
    clone_url, sha = repos["hooked"]
    body = encode(github_push(html_url=clone_url.removesuffix(".git"), clone_url=clone_url, full_name="org/hooked",
                              after=sha))
    pushed_at = time.monotonic()
    answer = requests.post(f"{stack.url}/hooks/github", data=body, headers=github_headers(body, SECRET), timeout=30)
    assert answer.status_code == 202, answer.text
    build = [data for _, data in collect(answer.json()["events_url"], timeout=600)]
    push_to_image = time.monotonic() - pushed_at
    assert build[-1]["phase"] == "ready" and build[-1]["imageName"].endswith(f":{sha}"), build
    assert "building" in {event["phase"] for event in build}, "the push built it"
    assert requests.get(answer.json()["log_url"], params={"format": "text"}, timeout=30).status_code == 200

    image = build[-1]["imageName"]
    deadline = time.monotonic() + 120
    while pooled(stack).get(image, 0) < 1:  # the pool follows the new image without a click
        assert time.monotonic() < deadline, f"no warm server of {image}: {pooled(stack)}"
        time.sleep(0.5)

    took, events = click(stack, clone_url)
    assert events[-1]["phase"] == "ready", events
    assert "building" not in {event["phase"] for event in events}, "the click found the pushed commit's image"
    assert any(event.get("pool") == "hit" for event in events), "and a server of it already started"
    assert sum(sha in line for line in build_counter[0].read_text().splitlines()) == 1, "one build of the commit"
    metrics = requests.get(f"{stack.url}/metrics", timeout=30).text
    assert 'bindery_builds_total{status="success",trigger="push"} 1.0' in metrics

    baseline, cold = click(stack, repos["clicked"][0])  # the same kind of repository, no hook
    assert cold[-1]["phase"] == "ready" and "building" in {event["phase"] for event in cold}
    print(f"\nbuild on push: push -> image pushed {push_to_image:.2f} s; click after it request -> ready "
          f"{took:.2f} s (pool hit); click with no hook request -> ready {baseline:.2f} s (build + start)")
