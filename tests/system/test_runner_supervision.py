"""`make run` keeps serving when its processes die: each role SIGKILLed in turn, launches still end.

Real: the runner as `make run` starts it (``python -m app.runner``, settings from the
environment), its embedded Redis (append-only file), gunicorn, both Celery workers,
beat and Flower; builds are repo2docker through Podman from git over HTTP on
loopback.  Launches use the ``bench`` launcher (no container per launch; the point
here is the processes behind the launch).  Each role's main process is SIGKILLed as
the OOM killer would; after each kill a launch in flight must end (``ready``, or
``failed`` with a message, never hanging) and a new launch of a built image must
reach ``ready``.  One runner serves all the kill cases; a second one shows a process
that crashes in a loop stopping the service with a message.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests

from tests.clients import Client, wait_for
from tests.conftest import BASE_IMAGE, GitServer, remove_image_at_end
from tests.stack import run_prefix
from tests.system.supervised import Runner, follow, launch_url, wait_ended

pytestmark = [pytest.mark.integration, pytest.mark.engine]

#: Seconds from each kill to the next launch that reached ``ready`` (printed at the end).
FIGURES: dict[str, float] = {}
#: Images this module built, removed (by name) at its end.
IMAGES: list[str] = []


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory, docker_host: str,
           engine: docker.DockerClient) -> Iterator[Runner]:
    running = Runner(tmp_path_factory.mktemp("supervised"), {
        "docker_host": docker_host,  # no registry: images stay in the engine
        "image_prefix": run_prefix("localhost/bindery-test-"),
        "launcher": "bench",
        "bench_launch_delay": 2,  # long enough to kill a worker while a launch is in its launch step
        "launch_concurrency": 20,
        "build_lock_ttl": 6,
        "launch_visibility_timeout": 5,
        "keepalive_interval": 1,
        "health_cache_seconds": 0,
        "log_format": "text",
    }).start()
    yield running
    status = running.stop()
    left = running.left_running()
    for image in IMAGES:
        remove_image_at_end(image)
    print("\nseconds from SIGKILL to the next launch that reached ready: "
          + ", ".join(f"{role} {seconds:.1f}" for role, seconds in FIGURES.items()))
    assert status == 0, running.output()[-3000:]
    assert not left, f"still running after Ctrl-C: {left}"


@pytest.fixture(scope="module")
def built_repo(runner: Runner, git_server: GitServer) -> str:
    """A repository whose image is built (launches of it start at once)."""
    repo_url, _ = git_server.make_repo(f"FROM {BASE_IMAGE}\nRUN echo {uuid.uuid4().hex} > /tmp/id\n")
    client = follow(launch_url(runner, repo_url, "?build_only=true"))
    wait_ended(client, 300)
    final = client.events[-1][1]
    assert final["phase"] == "ready", client.events[-3:]
    IMAGES.append(final["imageName"])
    return repo_url


def assert_ended_clearly(client: Client, what: str) -> None:
    """A launch that was in flight: ready, or failed with a message; each event once."""
    final = client.events[-1][1]
    assert final["phase"] in ("ready", "failed"), (what, client.events[-3:])
    if final["phase"] == "failed":
        assert final.get("message", "").strip() and "Traceback" not in final["message"], (what, final)
    ids = [event_id for event_id, _ in client.events]
    assert len(ids) == len(set(ids)), f"{what}: an event came twice"


def assert_restart_logged(runner: Runner, role: str, pid: int) -> None:
    wait_for(lambda: f"{role} (pid {pid}) was killed by SIGKILL; starting it again in 1 s" in runner.output(),
             10, lambda: f"the runner to log the restart of {role}:\n{runner.output()[-2000:]}")


def test_build_worker_killed_mid_build_the_build_is_done_again(runner: Runner, git_server: GitServer) -> None:
    marker = uuid.uuid4().hex
    repo_url, _ = git_server.make_repo(f"FROM {BASE_IMAGE}\nRUN echo {marker}-start && sleep 8 && echo {marker}\n")
    in_flight = follow(launch_url(runner, repo_url))
    wait_for(lambda: in_flight.said(f"{marker}-start"), 300, lambda: f"the build to start: {in_flight.events[-3:]}")
    pid, killed = runner.kill("build-worker")
    runner.wait_restarted("build-worker", pid)
    assert_restart_logged(runner, "build-worker", pid)

    ready_at = wait_ended(in_flight, 240)
    assert_ended_clearly(in_flight, "the launch whose build was killed")
    assert in_flight.phases[-1] == "ready", "built again by the restarted worker"
    assert in_flight.said("stopped; checking again"), "the launch noticed its build stopped"
    FIGURES["build-worker"] = ready_at - killed
    IMAGES.append(in_flight.events[-1][1]["image"])

    again = follow(launch_url(runner, repo_url))
    wait_ended(again, 60)
    assert again.phases[-1] == "ready" and "building" not in again.phases, "the image is there now"
    runner.wait_serving(60)


@pytest.mark.parametrize("role", ["launch-worker", "beat", "web", "redis"])
def test_role_killed_in_flight_launch_ends_and_new_launches_are_served(
        runner: Runner, built_repo: str, role: str) -> None:
    url = launch_url(runner, built_repo)
    in_flight = follow(url)
    wait_for(lambda: in_flight.said("Launching server"), 60, lambda: f"a launch in flight: {in_flight.events[-3:]}")
    pid, killed = runner.kill(role)
    # Once the runner saw it die (its sockets are closed then), ask at once: the launch waits (or
    # retries its connection) until the role is back.  (Asked in the few ms while the kernel is
    # still tearing the process down, a launch queued for a dead launch worker can be handed to
    # its BRPOP and lost: kombu's Redis transport pops before it records the message as unacked.)
    assert_restart_logged(runner, role, pid)
    nxt = follow(url)
    ready_at = wait_ended(nxt, 120)
    assert nxt.phases[-1] == "ready", (role, nxt.events[-3:])
    FIGURES[role] = ready_at - killed

    wait_ended(in_flight, 120)
    assert_ended_clearly(in_flight, f"the launch in flight when {role} was killed")
    if role == "web":
        assert in_flight.reconnects >= 1, "its stream broke with the web and resumed with Last-Event-ID"
    runner.wait_restarted(role, pid)
    runner.wait_serving(60)  # /health: both workers heard from again


def test_a_process_that_crashes_in_a_loop_stops_the_service_with_a_message(tmp_path: Path) -> None:
    """Flower's port is taken, so Flower exits at once every time it starts."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        looping = Runner(tmp_path / "looping", {"flower_port": port, "launcher": "bench", "launch_concurrency": 5,
                                                "runner_restart_delay": 0.2, "runner_restart_limit": 3,
                                                "runner_restart_window": 120})
        looping.start(wait=False)

        def gave_up() -> bool:
            looping.remember_descendants()  # all it starts, to check that none is left
            return looping.process is not None and looping.process.poll() is not None

        try:
            wait_for(gave_up, 120, lambda: f"the runner to give up:\n{looping.output()[-3000:]}")
        finally:
            status = looping.stop()
    out = looping.output()
    assert status == 1, out[-3000:]
    assert out.count("flower (pid") == 3 and "starting it again in 0.2 s (crash 1 of 3" in out
    final = out[out.rindex("bindery: flower (pid"):]
    assert "exited with status 1; it stopped 3 times within 120 s, so the service stops. Last lines of flower:" \
        in final, final
    assert "Address already in use" in final, "its last lines say why"
    assert not looping.left_running(), "everything else was stopped"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{looping.url}/versions", timeout=5)
