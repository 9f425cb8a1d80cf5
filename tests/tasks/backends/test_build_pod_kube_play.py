"""The build pod, run for real: its manifest through ``podman kube play``.

Real: the Pod and ConfigMap manifests Bindery generates (kubernetes_builder), run
by Podman's Kubernetes runner with localhost/bindery-repo2docker:2024.7.0 (local
base + jupyter-repo2docker 2024.7.0; scripts/repo2docker-image.sh), the Podman
socket mounted where the node's Docker socket would be, a test repository from
the loopback git server, and the push to the loopback registry.
Adjusted for this machine: the pod gets ``hostNetwork: true`` (the git server and
the registry listen on 127.0.0.1 only; see ENVIRONMENT.md) and
``automountServiceAccountToken`` is dropped (Podman has no service accounts).
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import docker
import pytest
import yaml

from app.config import load_config
from providers import get_provider
from providers.base import image_name
from tasks.backends.kubernetes_builder import config_map_manifest, pod_manifest
from tasks.backends.registry import RegistryClient
from tests.conftest import BASE_IMAGE, LOOPBACK_ALLOWED, GitServer, remove_image_at_end

pytestmark = [pytest.mark.integration, pytest.mark.engine]

R2D_IMAGE = "localhost/bindery-repo2docker:2024.7.0"


def _podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def test_build_pod_builds_and_pushes_through_podman_kube_play(
        tmp_path: Path, docker_host: str, engine: docker.DockerClient, registry: str, git_server: GitServer) -> None:
    if _podman("image", "exists", R2D_IMAGE).returncode != 0:
        pytest.fail(f"{R2D_IMAGE} is missing: `make test` builds it (scripts/repo2docker-image.sh)")
    marker = uuid.uuid4().hex
    clone_url, sha = git_server.make_repo(f"FROM {BASE_IMAGE}\nRUN echo built-{marker} > /built.txt\n")
    host = registry.split("://", 1)[1]
    config = load_config({
        **LOOPBACK_ALLOWED, "builder": "kubernetes", "registry_url": registry, "image_prefix": f"{host}/bindery-kube-",
        "build_pod_image": R2D_IMAGE, "build_pod_engine_socket": docker_host.removeprefix("unix://"),
        "build_timeout": 300,
    }, environ={})
    repo = get_provider("git", f"{clone_url.replace(':', '%3A').replace('/', '%2F')}/main", config)
    image = image_name(config["image_prefix"], repo.build_slug(), sha)
    pod = pod_manifest(config, repo, {"resolved_ref": sha, "image": image})
    pod["spec"]["hostNetwork"] = True
    pod["spec"].pop("automountServiceAccountToken")
    name = pod["metadata"]["name"]
    manifest = tmp_path / "build-pod.yaml"
    manifest.write_text(yaml.safe_dump_all([config_map_manifest(config), pod]))

    try:
        played = _podman("kube", "play", str(manifest))
        assert played.returncode == 0, played.stderr
        container = f"{name}-builder"
        waited = _podman("wait", container, timeout=240)
        logs = _podman("logs", container).stdout + _podman("logs", container).stderr
        assert waited.stdout.strip() == "0", logs[-3000:]
        assert f"built-{marker}" in logs or "Successfully pushed" in logs or "Pushing image" in logs, logs[-3000:]
        # the pod pushed to the registry itself, as a cluster build pod does
        assert RegistryClient(registry).exists(image)
    finally:
        _podman("kube", "down", str(manifest))  # exactly the pod this file made
        remove_image_at_end(image)
