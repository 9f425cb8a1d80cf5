"""The jupyterhub launcher against a real JupyterHub.

Real: JupyterHub (PyPI) with configurable-http-proxy (npm), started here on
127.0.0.1 free ports; DockerSpawner (with the mixin of
contrib/jupyterhub/bindery_spawner.py) starting real single-user servers
through the Podman socket from localhost/bindery-jupyter:bookworm, each in a
network namespace of its own (slirp4netns without host loopback) that reaches the
hub's API only, through contrib/jupyterhub/hub_api_relay.py; the launcher's HTTP to
the hub and to the spawned server.  The hub process and the containers it made are removed by
pid / exact container name afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import redis
import requests

from app import keys
from app.config import load_config
from app.errors import LaunchError
from app.redis_server import EmbeddedRedis
from tasks.backends.jupyterhub_launcher import SERVER_NAME, JupyterHubLauncher
from tasks.lock import StartLine
from tests.conftest import JUPYTER_IMAGE
from tests.tasks.backends.test_docker_launcher import LAB_IMAGE
from tests.tasks.backends.test_user_network import PROBE, Listener, _in_container, _slirp_of

SPAWNER_DIR = Path(__file__).resolve().parents[3] / "contrib" / "jupyterhub"  # bindery_spawner.py, hub_api_relay.py

HUB_CONFIG = """
import sys
sys.path.insert(0, {spawner_dir!r})
import hub_api_relay
from bindery_spawner import BinderSpawnerMixin
from dockerspawner import DockerSpawner


class TestSpawner(BinderSpawnerMixin, DockerSpawner):
    pass


# User servers get a network namespace of their own (no way to the host's loopback); the hub's
# API, and only it, reaches them through a unix socket (contrib/jupyterhub/hub_api_relay.py).
relay_dir = hub_api_relay.serve_hub_api("{tmp}/hub-api", "127.0.0.1", {hub_port})

c.JupyterHub.bind_url = "http://127.0.0.1:{proxy_port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.JupyterHub.hub_connect_ip = "127.0.0.1"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.JupyterHub.db_url = "sqlite:///{tmp}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{tmp}/cookie_secret"
c.JupyterHub.allow_named_servers = True
c.JupyterHub.authenticator_class = "null"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.spawner_class = TestSpawner
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.DockerSpawner.client_kwargs = {{"base_url": {docker_host!r}}}
c.DockerSpawner.image = {image!r}
c.DockerSpawner.cmd = hub_api_relay.command(["jupyterhub-singleuser"])
c.DockerSpawner.network_name = "slirp4netns:allow_host_loopback=false"
c.DockerSpawner.use_internal_ip = False  # published on host_ip:<random>, read back with `port`
c.DockerSpawner.host_ip = "127.0.0.1"
c.DockerSpawner.volumes = {{relay_dir: {{"bind": hub_api_relay.MOUNT, "mode": "ro"}}}}
c.DockerSpawner.remove = True
c.DockerSpawner.pull_policy = "ifnotpresent"
c.DockerSpawner.prefix = "bindery-test-hub"
c.DockerSpawner.extra_create_kwargs = {{"labels": {{"org.bindery.test-hub": {run_id!r}}}}}
c.JupyterHub.services = [{{"name": "bindery", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{
    "name": "bindery-service",
    "scopes": ["admin:users", "admin:servers", "access:servers", "tokens"],
    "services": ["bindery"],
}}]
"""

# The hub's API from inside a server, at the URL the hub gave it: "<status> <body>".
HUB_API_PROBE = """
import os, urllib.request
with urllib.request.urlopen(os.environ["JUPYTERHUB_API_URL"].rstrip("/") + "/", timeout=10) as answer:
    print(answer.status, answer.read().decode())
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Hub:
    def __init__(self, tmp: Path, docker_host: str, extra: str = "") -> None:
        """``extra``: more hub config, after (so overriding) the lines above (tests/system/test_auth.py)."""
        chp = shutil.which("configurable-http-proxy")
        if not chp:
            pytest.fail("configurable-http-proxy is missing: `make test` installs it (scripts/test-setup.sh)")
        self.token = secrets.token_hex(32)
        self.run_id = secrets.token_hex(8)  # labels this hub's containers, so the test removes exactly those
        self.proxy_port = _free_port()
        self.hub_port = _free_port()  # the hub's own API, on the host's 127.0.0.1
        self.tmp = tmp
        config = HUB_CONFIG.format(spawner_dir=str(SPAWNER_DIR), proxy_port=self.proxy_port, hub_port=self.hub_port,
                                   proxy_api_port=_free_port(), chp=chp, tmp=tmp, docker_host=docker_host,
                                   image=JUPYTER_IMAGE, token=self.token, run_id=self.run_id) + extra
        (tmp / "jupyterhub_config.py").write_text(config)
        env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16)}
        env.pop("JUPYTERHUB_API_TOKEN", None)
        self.log = open(tmp / "hub.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(tmp / "jupyterhub_config.py")],
            cwd=tmp, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}/"

    def wait(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"JupyterHub exited: {self.logs()}")
            try:
                if requests.get(f"{self.url}hub/api/", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        pytest.fail(f"JupyterHub did not answer within {seconds} s: {self.logs()}")

    def logs(self) -> str:
        return (self.tmp / "hub.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        # SIGTERM lets the hub stop its servers (cleanup_servers) and its proxy; the session
        # (start_new_session) holds only the hub and the proxy it started.
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


# One spawn pending at a time: a second launch meanwhile is answered 429 (the tests here launch one
# after another, except the one that wants the 429).
SPAWN_LIMIT = "\nc.JupyterHub.concurrent_spawn_limit = 1\n"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, docker_host: str, engine: docker.DockerClient) -> Iterator[Hub]:
    server = Hub(tmp_path_factory.mktemp("hub"), docker_host, extra=SPAWN_LIMIT)
    try:
        server.wait()
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub_users(hub: Hub, engine: docker.DockerClient) -> Iterator[None]:
    """After each test: Bindery's users deleted through the hub, this hub's containers removed by label."""
    yield
    headers = {"Authorization": f"token {hub.token}"}
    for user in requests.get(f"{hub.url}hub/api/users", headers=headers, timeout=10).json():
        if user["name"].startswith("binder-"):
            requests.delete(f"{hub.url}hub/api/users/{user['name']}/servers/{SERVER_NAME}", headers=headers,
                            json={"remove": True}, timeout=60)
            requests.delete(f"{hub.url}hub/api/users/{user['name']}", headers=headers, timeout=60)
    for container in engine.containers.list(ignore_removed=True,
            all=True, filters={"label": [f"org.bindery.test-hub={hub.run_id}"]}):
        container.remove(force=True)


def _config(hub: Hub, **overrides: Any) -> dict[str, Any]:
    return load_config({"launcher": "jupyterhub", "hub_url": hub.url, "hub_api_token": hub.token,
                        "launch_timeout": 90, **overrides}, environ={})


def _launch(image: str) -> dict[str, Any]:
    return {"id": secrets.token_hex(16), "image": image, "repo_url": "https://example.org/repo.git",
            "ref_url": "https://example.org/repo/tree/abc", "origin": "http://127.0.0.1:8585/",
            "resolved_ref": "abc"}


def test_launch_through_the_hub_ends_ready_and_the_token_opens_the_server(
        hub: Hub, hub_users: None) -> None:
    config = _config(hub)
    launcher = JupyterHubLauncher(config)
    events: list[dict[str, Any]] = []
    url, token = launcher.launch(_launch(JUPYTER_IMAGE), events.append)

    assert url.startswith(f"{hub.url}user/binder-") and url.endswith(f"/{SERVER_NAME}/")
    assert all(event["phase"] == "launching" for event in events) and events  # the hub's progress
    # the bare image has neither JupyterLab nor the notebook UI: the page is told so
    assert events[-1]["default_url"] == "/" and events[-1]["no_interface"] is True, events[-1]
    answer = requests.get(f"{url}api", headers={"Authorization": f"token {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert "version" in answer.json()
    # the token opens only this server, and nothing without it
    assert requests.get(f"{url}api/status", timeout=10, allow_redirects=False).status_code in (302, 401, 403)

    # the hub's server list carries our user_options: quotas count from it
    servers = launcher._servers()
    assert launcher.running() == 1
    assert [s["user_options"]["repo_url"] for s in servers] == ["https://example.org/repo.git"]
    assert servers[0]["user_options"]["image"] == JUPYTER_IMAGE
    assert servers[0]["user_options"]["default_url"] == "/lab"
    from app.errors import QuotaExceeded
    with pytest.raises(QuotaExceeded):
        JupyterHubLauncher({**config, "quota_per_repo": 1}).check_quota("https://example.org/repo.git")
    JupyterHubLauncher({**config, "quota_per_repo": 1}).check_quota("https://example.org/other.git")
    launcher.check_quota("https://example.org/repo.git", quota=2)  # the spec policy's own quota wins
    with pytest.raises(QuotaExceeded):
        launcher.check_quota("https://example.org/repo.git", quota=1)

    # cleanup: a running server younger than max_age stays; with max_age 0 it goes
    assert launcher.cleanup(max_age=3600) == 0
    assert launcher.cleanup(max_age=0) == 1
    assert launcher._servers() == []


def test_the_spawner_starts_the_server_at_default_url_and_the_launcher_finds_it(
        hub: Hub, hub_users: None, engine: docker.DockerClient) -> None:
    """With JupyterLab in the image the server's root leads to /lab, through the hub's proxy."""
    try:
        engine.images.get(LAB_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{LAB_IMAGE} is missing: `make test` builds it (scripts/base-image.sh)")
    events: list[dict[str, Any]] = []
    url, token = JupyterHubLauncher(_config(hub)).launch(_launch(LAB_IMAGE), events.append)
    assert not any("default_url" in event for event in events), "the root leads to /lab: nothing to tell"
    headers = {"Authorization": f"token {token}"}
    root = requests.get(url, headers=headers, timeout=10, allow_redirects=False)
    assert root.status_code == 302 and root.headers["Location"].split("?")[0] == urllib.parse.urlsplit(
        url).path + "lab", root.headers
    lab = requests.get(f"{url}lab", headers=headers, timeout=30)
    assert lab.status_code == 200 and "<title>JupyterLab</title>" in lab.text


def test_stop_deletes_the_launch_s_user_and_server_only(hub: Hub, hub_users: None) -> None:
    """A cancelled launch (tasks/beat/abandon.py) leaves no hub user behind; others' stay."""
    launcher = JupyterHubLauncher(_config(hub))
    launch = _launch(JUPYTER_IMAGE)
    launcher.launch(launch, lambda event: None)
    assert launcher.stop(secrets.token_hex(16)) == 0
    assert launcher.running() == 1
    assert launcher.stop(launch["id"]) == 1
    assert launcher._servers() == []
    headers = {"Authorization": f"token {hub.token}"}
    users = requests.get(f"{hub.url}hub/api/users", headers=headers, timeout=10).json()
    assert [u["name"] for u in users if u["name"].startswith("binder-")] == []


def test_a_spawned_server_reaches_the_hub_api_and_none_of_the_hosts_other_services(
        hub: Hub, hub_users: None, engine: docker.DockerClient) -> None:
    """The server has a namespace of its own: the hub's API through the relay, nothing else of the host.

    The spawn itself needs the hub's API (jupyterhub-singleuser asks it at start), so a ready
    server shows the relay works; from inside, a listener on the host's 127.0.0.1 (standing for
    Redis) and the hub's public proxy port are refused, while the hub's API answers at
    ``JUPYTERHUB_API_URL`` as the hub set it.  Nothing is sent to any address but 127.0.0.1.
    """
    redis = Listener()
    try:
        url, token = JupyterHubLauncher(_config(hub)).launch(_launch(JUPYTER_IMAGE), lambda event: None)
        assert requests.get(f"{url}api", headers={"Authorization": f"token {token}"}, timeout=10).status_code == 200
        (container,) = engine.containers.list(filters={"label": f"org.bindery.test-hub={hub.run_id}"})
        targets = [("redis", redis.port), ("proxy", hub.proxy_port), ("hub api", hub.hub_port)]
        said = _in_container(container.id, "python3", "-c", PROBE, json.dumps(targets))
        assert "redis: REFUSED" in said and "proxy: REFUSED" in said, said
        assert "hub api: CONNECTED" in said, said  # the relay, on the container's own loopback
        said = _in_container(container.id, "python3", "-c", HUB_API_PROBE)
        assert said.startswith("200 ") and '"version"' in said, said
        assert redis.accepted == 0, "user code reached a host service"

        attrs = engine.api.inspect_container(container.id)
        # Podman reports the mode without its options: the namespace's slirp4netns shows them
        assert attrs["HostConfig"]["NetworkMode"].startswith("slirp4netns"), attrs["HostConfig"]["NetworkMode"]
        helper = _slirp_of(attrs["NetworkSettings"]["SandboxKey"])
        assert "--disable-host-loopback" in helper, f"the namespace's slirp4netns keeps host loopback: {helper}"
        bindings = [b for found in attrs["HostConfig"]["PortBindings"].values() for b in found]
        assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings), bindings
    finally:
        redis.close()


def test_a_failing_spawn_is_retried_with_new_users_then_reported_with_the_hubs_reason(
        hub: Hub, hub_users: None) -> None:
    config = _config(hub, hub_launch_retries=1, hub_retry_delay=0.2)
    events: list[dict[str, Any]] = []
    with pytest.raises(LaunchError) as caught:
        JupyterHubLauncher(config).launch(_launch("localhost/bindery-no-such-image:missing"), events.append)
    message = caught.value.message
    assert "failed after 2 attempts" in message
    # the hub's own reason (DockerSpawner: the engine has no such image), from its progress stream
    assert "Spawn failed" in message and "no such image" in message, message
    assert any("Launch attempt 1 failed" in event["message"] for event in events)
    # every attempt's user is gone: nothing is left on the hub
    headers = {"Authorization": f"token {hub.token}"}
    users = requests.get(f"{hub.url}hub/api/users", headers=headers, timeout=10).json()
    assert [u["name"] for u in users if u["name"].startswith("binder-")] == []


def test_an_unreachable_hub_is_a_launch_error() -> None:
    config = load_config({"launcher": "jupyterhub", "hub_url": f"http://127.0.0.1:{_free_port()}/",
                          "hub_api_token": "x" * 32}, environ={})
    with pytest.raises(LaunchError, match="did not answer"):
        JupyterHubLauncher(config).launch(_launch(JUPYTER_IMAGE), lambda event: None)
    with pytest.raises(LaunchError, match="needs hub_url"):
        JupyterHubLauncher(load_config({"launcher": "jupyterhub"}, environ={}))


def test_a_hub_at_its_spawn_limit_makes_the_launch_wait_its_turn_not_fail(
        hub: Hub, hub_users: None, redis_server: EmbeddedRedis) -> None:
    """The hub answers 429 while the first spawn is pending: the second launch waits in line, told so, then starts."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    config = _config(hub)
    first, second = _launch(JUPYTER_IMAGE), _launch(JUPYTER_IMAGE)
    first["created"], second["created"] = time.time(), time.time() + 0.001
    events: dict[str, list[dict[str, Any]]] = {"first": [], "second": []}
    results: dict[str, tuple[str, str]] = {}

    def run(name: str, launch: dict[str, Any]) -> None:
        results[name] = JupyterHubLauncher(config, redis=client).launch(launch, events[name].append)

    thread = threading.Thread(target=run, args=("first", first))
    thread.start()
    headers = {"Authorization": f"token {hub.token}"}
    prefix = f"binder-{first['id'][:12]}-"

    def first_pending() -> bool:  # (the hub holds the first POST up to slow_spawn_timeout: ask it)
        users = requests.get(f"{hub.url}hub/api/users", headers=headers, timeout=10).json()
        return any(user["name"].startswith(prefix) and (user.get("servers") or {}).get(SERVER_NAME, {}).get("pending")
                   for user in users)

    deadline = time.monotonic() + 60
    while not first_pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first_pending(), "the first spawn never began"
    run("second", second)
    thread.join(120)

    told = [event for event in events["second"] if "ahead" in event]
    assert told and told[-1]["message"] == "Waiting to start: yours is next.\n", events["second"]
    assert all(event["phase"] == "launching" for event in events["second"])
    for url, token in results.values():  # both started, each server answers its own token
        answer = requests.get(f"{url}api", headers={"Authorization": f"token {token}"}, timeout=10)
        assert answer.status_code == 200, answer.text
    assert StartLine(client, "hub").waiting() == 0 and not client.zcard(keys.START_SLOTS("hub"))
