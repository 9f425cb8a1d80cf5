"""The Dockerfile: built with Podman from the local base, started, and asked for /versions.

Real: `podman build` of the project's Dockerfile (offline: BASE is the local Debian base;
layers are reused between runs, so a rebuild after a code change takes seconds), the image
started on the engine with host networking, a real Redis (EmbeddedRedis) as REDIS_URL, and
HTTP to its gunicorn on a free loopback port. The container is removed by id.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import docker
import pytest
import requests

from app.redis_server import EmbeddedRedis
from tests.conftest import BASE_IMAGE
from tests.stack import run_prefix

pytestmark = [pytest.mark.integration, pytest.mark.engine]

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_image_builds_offline_starts_and_answers_versions(
        engine: docker.DockerClient, redis_server: EmbeddedRedis) -> None:
    image = f"{run_prefix('localhost/bindery-')}dockerfile:test"  # this run's: removed at its end
    built = subprocess.run(
        ["podman", "build", "--network", "host", "--pull=never", "--build-arg", f"BASE={BASE_IMAGE}",
         "-t", image, str(ROOT)], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "pip check" not in built.stderr  # (pip check and the import smoke test run in the build)

    port = _free_port()
    container = engine.containers.run(
        image, detach=True, network_mode="host",
        environment={"REDIS_URL": redis_server.url, "PORT": str(port), "BINDERY_LISTEN_ADDRESS": "127.0.0.1",
                     "BINDERY_LAUNCHER": "bench"})
    try:
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/versions", timeout=2)
                break
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow on a busy machine
                container.reload()
                if container.status in ("exited", "dead"):
                    break
                time.sleep(0.3)
        logs = container.logs(tail=30).decode(errors="replace")
        assert answer is not None, f"the image did not answer on :{port}: {logs}"
        assert answer.status_code == 200, logs
        assert "bindery" in answer.json()
        # (the engine's CLI: docker-py's exec_run through Podman's API loses the output now and then)
        user = subprocess.run(["podman", "exec", container.id, "id", "-u"], capture_output=True, text=True,
                              timeout=60).stdout.strip()
        assert user == "10001"  # non-root
        assert container.attrs["Config"]["Entrypoint"] == ["dumb-init", "--"]
    finally:
        container.remove(force=True)
