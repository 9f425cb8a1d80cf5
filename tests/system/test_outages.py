"""Dependencies down under a running Bindery: a ``failed`` event naming the part, /health, recovery.

Real: gunicorn, both Celery workers, an embedded Redis, git over HTTP on
loopback, repo2docker; the reference registry (stopped and started again on
its port and data), a Podman API service of this test's own (killed by pid and
started again on its socket; the shared engine is never touched), and a real
JupyterHub (stopped and started again on its ports).  The GitHub API cannot
exist here: a loopback server replays a recorded real answer of GitHub's
commits API (tests/providers/recordings/github_commit_200.json, its ``sha``
set to the test repository's commit), and is stopped and started again.
Bindery itself is never restarted.
"""

from __future__ import annotations

import copy
import http.server
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
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from app.redis_server import free_port
from tests.clients import wait_for
from tests.conftest import JUPYTER_IMAGE, GitServer
from tests.stack import LocalRegistry, Stack, StackFactory, collect, own_registry_port, run_prefix

pytestmark = [pytest.mark.integration, pytest.mark.engine]

RECORDING = Path(__file__).resolve().parents[1] / "providers" / "recordings" / "github_commit_200.json"


def quick_dockerfile() -> str:
    return f"FROM {JUPYTER_IMAGE}\nRUN echo {uuid.uuid4().hex} > /home/jovyan/.build-id\n"


def git_url(stack: Stack, repo_url: str, query: str = "") -> str:
    return f"{stack.url}/build/git/{urllib.parse.quote(repo_url, safe='')}/main{query}"


def health(stack: Stack) -> tuple[int, dict[str, bool]]:
    response = requests.get(f"{stack.url}/health", timeout=60)
    return response.status_code, {check["service"]: check["ok"] for check in response.json()["checks"]}


def assert_clear_failure(events: list[tuple[str | None, dict[str, Any]]], status: int, *names: str) -> str:
    final = events[-1][1]
    assert final["phase"] == "failed", events[-3:]
    assert final["status_code"] == status, final
    for name in names:
        assert name in final["message"], final["message"]
    for noise in ("Traceback", "Internal error"):
        assert noise not in final["message"]
    return str(final["message"])


def stack_settings(**extra: Any) -> dict[str, Any]:
    """Besides the factory's engine, registry and launch ports: health checked on each ask, quick timeouts."""
    return {"keepalive_interval": 1, "health_cache_seconds": 0, "image_found_cache": 0, "registry_timeout": 3,
            **extra}


# --- registry and GitHub API ------------------------------------------------------------------

class ReplayGitHub:
    """GitHub's commits endpoint on a fixed loopback port, answering with a recorded real reply."""

    def __init__(self) -> None:
        self.port = free_port()
        self.recording = json.loads(RECORDING.read_text())
        self.sha = ""
        self.rate_limit_asks = 0
        self.httpd: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ReplayGitHub:
        replay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/rate_limit":  # its documented shape; this endpoint costs no rate limit
                    replay.rate_limit_asks += 1
                    body = {"resources": {}, "rate": {"limit": 60, "remaining": 59, "reset": 0, "used": 1}}
                else:
                    body = copy.deepcopy(replay.recording["body"])
                    body["sha"] = replay.sha
                data = json.dumps(body).encode()
                self.send_response(200 if self.path.startswith(("/repos/", "/rate_limit")) else 404)
                for key, value in replay.recording["headers"].items():
                    if key.lower() not in ("content-length", "etag", "transfer-encoding", "content-encoding"):
                        self.send_header(key, str(value))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


@pytest.fixture(scope="module")
def github() -> Iterator[ReplayGitHub]:
    server = ReplayGitHub().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A registry of this module's own, which its tests stop (the run's registry serves every worker)."""
    registry = LocalRegistry(tmp_path_factory.mktemp("own-registry"), own_registry_port()).start()
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory, git_server: GitServer, github: ReplayGitHub,
          own_registry: LocalRegistry) -> Stack:
    return make_module_stack("outages", stack_settings(
        github_api_url=github.url, github_url=git_server.url, registry_url=own_registry.url,
        image_prefix=run_prefix(f"127.0.0.1:{own_registry.port}/bindery-outages-")))


def test_registry_down_fails_naming_it_and_health_503_then_recovers(
        stack: Stack, own_registry: LocalRegistry, git_server: GitServer) -> None:
    repo_url, sha = git_server.make_repo(quick_dockerfile())
    own_registry.stop()
    try:
        started = time.monotonic()
        events = collect(git_url(stack, repo_url, "?build_only=true"), timeout=120)
        failed_after = time.monotonic() - started
        assert_clear_failure(events, 503, "registry", f"127.0.0.1:{own_registry.port}")
        status, checks = health(stack)
        assert status == 503 and checks["Registry"] is False, checks
    finally:
        own_registry.start()
    assert health(stack)[0] == 200
    started = time.monotonic()
    events = collect(git_url(stack, repo_url, "?build_only=true"), timeout=300)
    assert events[-1][1]["phase"] == "ready" and events[-1][1]["imageName"].endswith(sha), events[-3:]
    print(f"registry down: failed after {failed_after:.1f} s; recovered launch {time.monotonic() - started:.1f} s")


def test_github_api_down_fails_naming_it_then_recovers(
        stack: Stack, github: ReplayGitHub, git_server: GitServer) -> None:
    served, sha = git_server.make_repo(quick_dockerfile())
    # the repository where the configured github_url says it is: <github_url>/<user>/<repo>
    user, repo = f"octo-{uuid.uuid4().hex[:8]}", "demo"
    bare = git_server.root / served.rsplit("/", 1)[1]
    shutil.copytree(bare, git_server.root / user / repo)
    github.sha = sha
    url = f"{stack.url}/build/gh/{user}/{repo}/main?build_only=true"
    github.stop()
    try:
        started = time.monotonic()
        events = collect(url, timeout=120)
        failed_after = time.monotonic() - started
        assert_clear_failure(events, 502, "GitHub API", github.url)
        # the failed resolve marked an outage: /health now asks GitHub's /rate_limit, which is down
        status, checks = health(stack)
        assert status == 503 and checks["GitHub API"] is False, checks
    finally:
        github.start()
    status, checks = health(stack)
    assert status == 200 and checks["GitHub API"] is True, checks
    asks = github.rate_limit_asks
    assert asks == 1, "the marked outage made /health ask GitHub's /rate_limit once, which cleared it"
    assert health(stack)[0] == 200 and github.rate_limit_asks == asks, "no outage marked: GitHub is not asked"
    started = time.monotonic()
    events = collect(url, timeout=300)
    assert events[-1][1]["phase"] == "ready" and events[-1][1]["imageName"].endswith(sha), events[-3:]
    print(f"GitHub API down: failed after {failed_after:.1f} s; recovered launch {time.monotonic() - started:.1f} s")


# --- container engine -------------------------------------------------------------------------

class OwnEngine:
    """A Podman API service of this test's own (same storage as the shared one), on its own socket."""

    def __init__(self) -> None:
        self.socket = Path(f"/tmp/bindery-outage-{secrets.token_hex(4)}.sock")
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> OwnEngine:
        self.socket.unlink(missing_ok=True)  # a killed service leaves its socket file behind
        self.process = subprocess.Popen(["podman", "system", "service", "--time=0", self.url],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._pings():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("our podman service did not start")
            time.sleep(0.2)
        return self

    def _pings(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(str(self.socket))
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
                return b"OK" in sock.recv(4096)
        except OSError:
            return False

    def kill(self) -> None:
        """The fault: SIGKILL to exactly our service process."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


def test_engine_down_fails_naming_it_and_health_503_then_recovers(
        make_stack: StackFactory, git_server: GitServer, engine: docker.DockerClient,
        launched_containers: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    own = OwnEngine().start()
    monkeypatch.setenv("DOCKER_HOST", own.url)  # the Stack's processes inherit it (it overrides docker_host)
    running = make_stack("engine", stack_settings(docker_host=own.url))
    try:
        repo_url, sha = git_server.make_repo(quick_dockerfile())
        url = git_url(running, repo_url)

        own.kill()  # down before the build: the build step says so
        events = collect(url, timeout=120)
        assert_clear_failure(events, 503, "container engine", str(own.socket))
        status, checks = health(running)
        assert status == 503 and checks["Launcher"] is False, checks

        own.start()
        assert health(running)[0] == 200
        started = time.monotonic()
        events = collect(url, timeout=300)
        launched_containers.append(events[-1][0].split("_")[0] if events[-1][0] else "")
        assert events[-1][1]["phase"] == "ready" and events[-1][1]["image"].endswith(sha), events[-3:]
        recovered = time.monotonic() - started

        own.kill()  # down with the image in the registry: the launch step says so
        events = collect(url, timeout=120)
        assert [data["phase"] for _, data in events][-2:] == ["launching", "failed"], events[-3:]
        assert_clear_failure(events, 503, "container engine", str(own.socket))
        own.start()
        events = collect(url, timeout=300)
        launched_containers.append(events[-1][0].split("_")[0] if events[-1][0] else "")
        assert events[-1][1]["phase"] == "ready", events[-3:]
    finally:
        running.stop()
        own.kill()
        own.socket.unlink(missing_ok=True)
    print(f"engine down: recovered launch (build+push+launch) in {recovered:.1f} s")


# --- JupyterHub -------------------------------------------------------------------------------

def test_hub_down_fails_naming_it_and_health_503_then_recovers(
        tmp_path: Path, make_stack: StackFactory, docker_host: str, git_server: GitServer,
        engine: docker.DockerClient) -> None:
    from tests.tasks.backends.test_jupyterhub_launcher import SERVER_NAME, Hub

    (tmp_path / "hub").mkdir()
    hub = Hub(tmp_path / "hub", docker_host)
    running: Stack | None = None
    try:
        hub.wait()
        running = make_stack("stack", stack_settings(
            launcher="jupyterhub", hub_url=hub.url, hub_api_token=hub.token, launch_timeout=90))
        repo_url, sha = git_server.make_repo(quick_dockerfile())
        url = git_url(running, repo_url)
        assert health(running)[0] == 200

        hub.stop()
        events = collect(url, timeout=300)  # builds and pushes, then cannot launch
        assert "built" in [data["phase"] for _, data in events]
        assert_clear_failure(events, 503, "JupyterHub")
        status, checks = health(running)
        assert status == 503 and checks["Launcher"] is False, checks

        env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16)}
        env.pop("JUPYTERHUB_API_TOKEN", None)
        hub.log = open(hub.tmp / "hub.log", "ab")  # the same hub again: same config, ports, database
        hub.proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(hub.tmp / "jupyterhub_config.py")],
                                    cwd=hub.tmp, env=env, stdout=hub.log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        hub.wait()
        wait_for(lambda: health(running)[0] == 200, 30, "/health to recover")  # type: ignore[union-attr]
        started = time.monotonic()
        events = collect(url, timeout=300)
        final = events[-1][1]
        assert final["phase"] == "ready" and final["url"].startswith(hub.url), events[-3:]
        assert final["image"].endswith(sha)
        print(f"hub down: recovered launch through the hub in {time.monotonic() - started:.1f} s")
    finally:
        if running:
            running.stop()
        headers = {"Authorization": f"token {hub.token}"}
        if hub.proc.poll() is None:
            for user in requests.get(f"{hub.url}hub/api/users", headers=headers, timeout=10).json():
                if user["name"].startswith("binder-"):
                    requests.delete(f"{hub.url}hub/api/users/{user['name']}/servers/{SERVER_NAME}",
                                    headers=headers, json={"remove": True}, timeout=60)
                    requests.delete(f"{hub.url}hub/api/users/{user['name']}", headers=headers, timeout=60)
            hub.stop()
        for container in engine.containers.list(ignore_removed=True,
                all=True, filters={"label": [f"org.bindery.test-hub={hub.run_id}"]}):
            container.remove(force=True)
