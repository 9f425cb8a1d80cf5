"""A build worker killed with SIGKILL mid-build: the build is done again and every waiting client gets ``ready``.

Real: gunicorn, the Celery build (prefork) and launch (gevent) workers, an
embedded Redis, the reference registry, repo2docker through Podman, Jupyter
servers in containers, git over HTTP on loopback.  The faults are real
SIGKILLs of the worker's processes, found by pid while repo2docker runs.

Two ways back, both shown:
* only the pool process dies: the worker main re-queues the message
  (acks_late + reject_on_worker_lost) and a new pool process builds again;
* the whole worker dies (main and pool process): the message stays unacked
  until the broker's visibility timeout, so the build's lock expires instead and
  the launches waiting on it (the one that queued it included) rebuild.  The
  message delivered again later (its visibility timeout passed) finds the image
  and launches nothing.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.parse
import uuid
from pathlib import Path

import docker
import psutil
import pytest
import redis
from kombu import Connection

from tests.clients import Client, wait_for
from tests.conftest import JUPYTER_IMAGE, GitServer
from tests.stack import Stack, StackFactory

pytestmark = [pytest.mark.integration, pytest.mark.engine]

CLIENTS = 3


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory, build_counter: tuple[Path, list[str]]) -> Stack:
    return make_module_stack("crash", {
        "repo2docker_command": build_counter[1],
        "keepalive_interval": 1,
        "launch_timeout": 120,
        "build_lock_ttl": 6,
    })


def slow_dockerfile(marker: str) -> str:
    """Builds in ~10 s: long enough to be killed in the middle, short enough for a test."""
    return f"FROM {JUPYTER_IMAGE}\nRUN echo {marker}-start && sleep 8 && echo {marker} > /home/jovyan/.build-id\n"


def start_clients(url: str) -> list[Client]:
    clients = [Client(url) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
        time.sleep(0.3)  # the first one queues the build; the others find its lock
    return clients


def repo2docker_under(worker: psutil.Process) -> tuple[psutil.Process, psutil.Process]:
    """(pool process, repo2docker process) of a prefork worker's running build."""
    for child in worker.children():
        for grandchild in child.children():
            if "repo2docker" in " ".join(grandchild.cmdline()):
                return child, grandchild
    raise AssertionError("no repo2docker process under the build worker")


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (a killed leader's children would still be in it)."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (psutil.Error, ProcessLookupError):
            pass
    return members


def assert_every_client_ready(clients: list[Client], launched_containers: list[str]) -> None:
    for client in clients:
        client.join(300)
        ids = {event_id.split("_")[0] for event_id, _ in client.events if event_id}
        launched_containers.extend(ids)
        phases = [data["phase"] for _, data in client.events]
        assert phases and phases[-1] == "ready", client.events[-4:]
        assert phases.count("ready") == 1, "one launch per client"
        starts = [data for _, data in client.events if data.get("message") == "Launching server...\n"]
        assert len(starts) == 1, [(d["phase"], d.get("message", "")[:80]) for _, d in client.events]
        seen = [event_id for event_id, _ in client.events]
        assert len(seen) == len(set(seen)), "no event twice"
    assert len({client.events[-1][1]["url"] for client in clients}) == CLIENTS, "a server each"


def runs(counter: Path, sha: str) -> int:
    return sum(sha in line for line in counter.read_text().splitlines())


def kill_mid_build(clients: list[Client], marker: str, stack: Stack, *, whole_worker: bool) -> int:
    """SIGKILL the build while repo2docker runs; returns repo2docker's pid (its group's id)."""
    wait_for(lambda: any(c.said(f"{marker}-start") for c in clients), 120,
             lambda: f"the build to start: {[c.events[-3:] for c in clients]}")
    worker = psutil.Process(stack.processes["build"].pid)
    pool, r2d = repo2docker_under(worker)
    assert os.getpgid(r2d.pid) == r2d.pid, "repo2docker leads its own process group"
    if whole_worker:
        worker.kill()
    pool.kill()
    return r2d.pid


def test_pool_process_killed_mid_build_is_redelivered_and_every_client_gets_ready(
        stack: Stack, git_server: GitServer, build_counter: tuple[Path, list[str]],
        launched_containers: list[str]) -> None:
    marker = uuid.uuid4().hex
    repo_url, sha = git_server.make_repo(slow_dockerfile(marker))
    url = f"{stack.url}/build/git/{urllib.parse.quote(repo_url, safe='')}/main"
    started = time.monotonic()
    clients = start_clients(url)
    r2d = kill_mid_build(clients, marker, stack, whole_worker=False)

    # repo2docker does not outlive the process that ran it, nor does anything in its group
    wait_for(lambda: not psutil.pid_exists(r2d) or psutil.Process(r2d).status() == psutil.STATUS_ZOMBIE,
             10, "repo2docker to die with its worker")
    assert group_members(r2d) == []
    assert_every_client_ready(clients, launched_containers)
    assert "SIGKILL" in (stack.directory / "build.log").read_text(errors="replace"), "the pool process was killed"
    # built again by the re-delivered message (or found already built, if the engine finished it)
    assert runs(build_counter[0], sha) == 2 or all(c.said("Image already built") for c in clients)
    assert runs(build_counter[0], sha) <= 2
    print(f"pool process killed: {CLIENTS} clients ready after {time.monotonic() - started:.1f} s")


def test_whole_build_worker_killed_lock_expires_and_waiting_launches_rebuild(
        stack: Stack, git_server: GitServer, build_counter: tuple[Path, list[str]],
        launched_containers: list[str], engine: docker.DockerClient) -> None:
    marker = uuid.uuid4().hex
    repo_url, sha = git_server.make_repo(slow_dockerfile(marker))
    url = f"{stack.url}/build/git/{urllib.parse.quote(repo_url, safe='')}/main"
    started = time.monotonic()
    clients = start_clients(url)
    r2d = kill_mid_build(clients, marker, stack, whole_worker=True)
    stack.processes["build"].wait(10)
    wait_for(lambda: not psutil.pid_exists(r2d) or psutil.Process(r2d).status() == psutil.STATUS_ZOMBIE,
             10, "repo2docker to die with its worker")
    assert group_members(r2d) == []
    stack.start_role("build")  # the orchestrator brings a worker back; the old message stays unacked

    assert_every_client_ready(clients, launched_containers)
    assert all(c.said("stopped; checking again") for c in clients), "each launch noticed the dead build"
    builds = runs(build_counter[0], sha)
    assert builds == 2 or any(c.said("Image already built") for c in clients)
    print(f"whole worker killed: {CLIENTS} clients ready after {time.monotonic() - started:.1f} s")

    # Later the broker's visibility timeout passes and the dead worker's message is delivered
    # again: kombu's own restore, with the timeout taken as already passed.
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    stale = [json.loads(raw)[0] for raw in client.hvals("unacked")]
    stale_builds = [m for m in stale if m["headers"].get("task") == "bindery.build"]
    assert len(stale_builds) == 1, [m["headers"].get("task") for m in stale]
    old_build = json.loads(base64.b64decode(stale_builds[0]["body"]))[0][0]["build_id"]
    channels = {c.events[-1][0].split("_")[0] for c in clients if c.events[-1][0]}
    before = {channel: client.xlen(f"bindery:events:{channel}") for channel in channels}
    with Connection(stack.redis.url, transport_options={"visibility_timeout": 0}) as broker:
        broker.default_channel.qos.restore_visible(num=100)
    stream = f"bindery:events:build:{old_build}"
    wait_for(lambda: any('"built"' in fields["data"] for _, fields in client.xrange(stream)), 120,
             "the stale build message to run")
    time.sleep(3)  # room for a launch it must not start
    assert runs(build_counter[0], sha) == builds, "the image was there: no repo2docker run"
    assert {channel: client.xlen(f"bindery:events:{channel}") for channel in channels} == before, \
        "the stale build launched nothing and told no client anything"
