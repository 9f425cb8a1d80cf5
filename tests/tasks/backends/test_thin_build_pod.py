"""A content-only commit's build pod, run for real: its manifest through ``podman kube play``.

As tests/tasks/backends/test_build_pod_kube_play.py does for repo2docker's pod: the Pod and ConfigMap
manifests Bindery generates, run by Podman's Kubernetes runner with the local repo2docker image, the
Podman socket where the node's Docker socket would be, the repository from the loopback git server,
and the push to the loopback registry (adjusted: ``hostNetwork``, no service account token).  The
earlier image stands for the full build of the first commit (the local Jupyter image, tagged).
"""

from __future__ import annotations

import subprocess
import tempfile
import urllib.parse
import uuid
from pathlib import Path

import docker
import pytest
import yaml

from app.config import load_config
from providers import get_provider
from providers.base import image_name
from tasks.backends import environment
from tasks.backends.kubernetes_builder import config_map_manifest, pod_manifest
from tasks.backends.registry import RegistryClient
from tasks.backends.thin_build import checkout
from tests.conftest import JUPYTER_IMAGE, LOOPBACK_ALLOWED, GitServer, remove_image_at_end

pytestmark = [pytest.mark.integration, pytest.mark.engine]

R2D_IMAGE = "localhost/bindery-repo2docker:2024.7.0"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]


def _podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def test_thin_build_pod_adds_the_new_content_and_pushes(
        tmp_path: Path, docker_host: str, engine: docker.DockerClient, registry: str, git_server: GitServer) -> None:
    if _podman("image", "exists", R2D_IMAGE).returncode != 0:
        pytest.fail(f"{R2D_IMAGE} is missing: `make test` builds it (scripts/repo2docker-image.sh)")
    name = f"repo-{uuid.uuid4().hex[:10]}"
    work, bare = git_server.root / f"{name}-work", git_server.root / f"{name}.git"
    subprocess.run([*GIT, "init", "-q", "-b", "main", str(work)], check=True)
    (work / "Dockerfile").write_text(f"FROM {JUPYTER_IMAGE}\nCOPY requirements.txt /tmp/requirements.txt\n")
    (work / "requirements.txt").write_text("# none\n")
    shas = []
    for text in ("first", "second"):
        (work / "analysis.ipynb").write_text(text)
        subprocess.run([*GIT, "-C", str(work), "add", "-A"], check=True)
        subprocess.run([*GIT, "-C", str(work), "commit", "-qm", text], check=True)
        shas.append(subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True,
                                   check=True).stdout.strip())
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    repo_url = f"{git_server.url}/{name}.git"

    host = registry.split("://", 1)[1]
    config = load_config({
        **LOOPBACK_ALLOWED, "builder": "kubernetes", "registry_url": registry, "image_prefix": f"{host}/bindery-thin-",
        "build_pod_image": R2D_IMAGE, "build_pod_engine_socket": docker_host.removeprefix("unix://"),
        "build_timeout": 300,
    }, environ={})
    repo = get_provider("git", f"{urllib.parse.quote(repo_url, safe='')}/main", config)
    base = image_name(config["image_prefix"], repo.build_slug(), shas[0])
    image = image_name(config["image_prefix"], repo.build_slug(), shas[1])
    engine.images.get(JUPYTER_IMAGE).tag(*base.rsplit(":", 1))
    with tempfile.TemporaryDirectory() as tmp:
        checkout(repo_url, shas[1], Path(tmp) / "r", {"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin"}, 60)
        decision = environment.decide(Path(tmp) / "r")
    assert decision.reusable and decision.kind == "dockerfile"
    launch = {"resolved_ref": shas[1], "image": image}
    plan = environment.plan_for(decision, launch, repo_url, {"image": base, "resolved_ref": shas[0]})
    pod = pod_manifest(config, repo, launch, thin_plan=plan)
    pod["spec"]["hostNetwork"] = True
    pod["spec"].pop("automountServiceAccountToken")
    manifest = tmp_path / "thin-pod.yaml"
    manifest.write_text(yaml.safe_dump_all([config_map_manifest(config), pod]))
    try:
        played = _podman("kube", "play", str(manifest))
        assert played.returncode == 0, played.stderr
        container = f"{pod['metadata']['name']}-builder"
        waited = _podman("wait", container, timeout=240)
        logs = _podman("logs", container).stdout + _podman("logs", container).stderr
        assert waited.stdout.strip() == "0", logs[-3000:]
        assert RegistryClient(registry).exists(image), logs[-3000:]
        # created, started, waited for, read, removed: run(remove=True) follows the log stream, which
        # Podman 4.3 at times never closes for a container that exits at once (the suite hung on it)
        reader = engine.containers.create(image, ["cat", "/home/jovyan/analysis.ipynb"], network_mode="none")
        try:
            reader.start()
            assert reader.wait(timeout=60)["StatusCode"] == 0
            assert reader.logs(stdout=True, stderr=False).decode() == "second"
        finally:
            reader.remove(force=True)
        labels = engine.images.get(image).labels
        assert labels["repo2docker.ref"] == shas[1] and labels["org.bindery.reused-from"] == shas[0]
    finally:
        _podman("kube", "down", str(manifest))  # exactly the pod this file made
        for leftover in (image, base):
            remove_image_at_end(leftover)
