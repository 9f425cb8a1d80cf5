"""The Dockerfile and `make image`: built with Podman from the local base, smoke-tested, pushed, started.

Real: scripts/image.sh (what `make image` runs) builds the project's Dockerfile with `podman build`
(offline: BASE is the local Debian base; layers are reused between runs, so a rebuild after a code
change takes seconds), runs its own smoke test and pushes to a real Registry v2 on loopback (the
run's); the one build serves every test here. The image is then started again on the engine
with host networking, a real Redis (EmbeddedRedis) as REDIS_URL, and HTTP to its gunicorn on a
free loopback port. Containers are removed by id; the image carries this run's prefix, so the end
of the run removes it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests

from app.redis_server import EmbeddedRedis
from tests.conftest import BASE_IMAGE
from tests.stack import REGISTRY_PORT, run_prefix

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "image.sh"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def image_sh(*args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "ENGINE": "podman", "BASE": BASE_IMAGE, **env})


@pytest.fixture(scope="module")
def made_image(engine: docker.DockerClient, registry: str) -> Iterator[tuple[str, str, str]]:
    """`make image REGISTRY=127.0.0.1:<port>/<this run's name> TAG=test`: (image, repository name, its output)."""
    name = f"{run_prefix('bindery-')}dockerfile"  # this run's: removed at its end (tests/conftest.py)
    repository = f"127.0.0.1:{REGISTRY_PORT}/{name}"
    made = image_sh(repository, "test")
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    yield f"{repository}:test", name, made.stderr + made.stdout  # stdout: only the helm arguments, last



@pytest.mark.integration
@pytest.mark.engine
def test_make_image_builds_smoke_tests_and_pushes_to_the_registry(
        made_image: tuple[str, str, str], registry: str) -> None:
    image, name, output = made_image
    assert "STEP 11/15: RUN pip check" in output  # (a failing pip check or import smoke test fails the build)
    assert "smoke test passed: /versions answered {\"bindery\"" in output and "as uid 10001" in output
    repository = image.rsplit(":", 1)[0]
    assert output.rstrip().splitlines()[-1] == f"--set image.repository={repository} --set image.tag=test"
    tags = requests.get(f"{registry}/v2/{name}/tags/list", timeout=10).json()
    assert tags["tags"] == ["test"]
    manifest = requests.head(f"{registry}/v2/{name}/manifests/test", timeout=10, headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"})
    assert manifest.status_code == 200


@pytest.mark.integration
@pytest.mark.engine
def test_image_starts_and_answers_versions_as_non_root(
        made_image: tuple[str, str, str], engine: docker.DockerClient, redis_server: EmbeddedRedis) -> None:
    image = made_image[0]
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


@pytest.mark.parametrize(("args", "message"), [
    ((), "usage: scripts/image.sh REGISTRY [TAG]"),
    (("",), "REGISTRY is empty"),
    (("bindery",), "is not a repository with its registry host"),
    (("127.0.0.1:5000/Bindery",), "is not a repository with its registry host"),
    (("127.0.0.1:5000/bindery:v1",), "is not a repository with its registry host"),
    (("someone/bindery",), "names no registry host (someone has no dot or port): write it out, e.g. docker.io/"),
    (("127.0.0.1:5000/bindery", "a b"), "TAG=a b is not a valid image tag"),
])
def test_make_image_refuses_bad_input_before_building(args: tuple[str, ...], message: str) -> None:
    refused = image_sh(*args, timeout=30)
    assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert "building" not in refused.stderr


def test_make_image_needs_a_registry_on_its_command_line() -> None:
    made = subprocess.run(["make", "--no-print-directory", "image"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items() if k not in ("REGISTRY", "TAG")})
    assert made.returncode != 0 and "make image REGISTRY=registry.example.org/bindery" in made.stderr
