"""Content-only commits in build pods: the worker decides from a real clone, and the pod it creates runs
thin_build.py (shipped in the ConfigMap) instead of repo2docker; a failed thin pod falls back to a full one.

The Kubernetes API is tests/kube_replay.py (recorded API responses over real HTTP): no cluster runs here.
The repository is real (the loopback git server), and so is Redis.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
from flask import Flask

from app import create_app
from app.redis_server import EmbeddedRedis
from providers import get_provider
from tasks.backends import environment
from tasks.backends.kubernetes_builder import CONFIG_DIR, KubernetesBuilder, build_pod_name
from tests.conftest import LOOPBACK_NETWORKS, GitServer
from tests.kube_replay import KubeReplay, Response, pod, watch_events

NS = "binder"
PODS = f"/api/v1/namespaces/{NS}/pods"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]


@pytest.fixture
def kube() -> Iterator[KubeReplay]:
    with KubeReplay() as server:
        yield server


@pytest.fixture
def app(redis_server: EmbeddedRedis) -> Flask:
    return create_app({"redis_url": redis_server.url, "builder": "kubernetes", "kubernetes_namespace": NS,
                       "allowed_private_networks": LOOPBACK_NETWORKS.split(",")})


def _repo(server: GitServer) -> tuple[str, list[str]]:
    """A repository with two commits: the second changes only a notebook; (URL, [sha1, sha2])."""
    name = f"repo-{uuid.uuid4().hex[:10]}"
    work, bare = server.root / f"{name}-work", server.root / f"{name}.git"
    subprocess.run([*GIT, "init", "-q", "-b", "main", str(work)], check=True)
    (work / "requirements.txt").write_text("numpy\n")
    shas = []
    for text in ("first", "second"):
        (work / "analysis.ipynb").write_text(text)
        subprocess.run([*GIT, "-C", str(work), "add", "-A"], check=True)
        subprocess.run([*GIT, "-C", str(work), "commit", "-qm", text], check=True)
        shas.append(subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True,
                                   text=True, check=True).stdout.strip())
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    return f"{server.url}/{name}.git", shas


def _script(kube: KubeReplay, name: str, *outcomes: bool) -> None:
    """One build pod per outcome (True: it succeeds), in order."""
    ends = [pod(name, "Succeeded", exit_code=0) if ok else pod(name, "Failed", exit_code=1)
            for ok in outcomes or (True,)]
    line = json.dumps({"phase": "building", "message": "STEP 1/3: FROM old\n"}).encode() + b"\n"
    kube.on("POST", f"/api/v1/namespaces/{NS}/configmaps", *[Response(201, {"kind": "ConfigMap"}) for _ in ends])
    kube.on("POST", PODS, *[Response(201, pod(name, "Pending")) for _ in ends])
    watches = []
    for end in ends:  # one watch until it runs (then the log is followed), one until it ends
        watches += [Response(200, chunks=watch_events(("MODIFIED", pod(name, "Running")))),
                    Response(200, chunks=watch_events(("MODIFIED", end)))]
    kube.on("GET", PODS, *watches, watch=True)
    kube.on("GET", f"{PODS}/{name}/log", *[Response(200, chunks=[line], content_type="text/plain") for _ in ends])
    kube.on("DELETE", f"{PODS}/{name}", *[Response(200, end) for end in ends])


def _setup(app: Flask, git_server: GitServer) -> tuple[Any, dict[str, Any], str]:
    repo_url, (first, second) = _repo(git_server)
    config = app.config["BINDERY"]
    repo = get_provider("git", f"{urllib.parse.quote(repo_url, safe='')}/main", config)
    image = f"127.0.0.1:5055/bindery-repo:{second}"
    launch = {"provider": "git", "spec": "x", "repo_url": repo_url, "resolved_ref": second, "image": image}
    with app.app_context():
        from app.extensions import redis_client

        root_hash = _env_hash(repo_url, first)
        environment.remember(redis_client.client, repo_url, root_hash, f"127.0.0.1:5055/bindery-repo:{first}", first)
    return repo, launch, first


def _env_hash(repo_url: str, sha: str) -> str:
    import tempfile
    from pathlib import Path

    from tasks.backends.thin_build import checkout

    with tempfile.TemporaryDirectory() as tmp:
        checkout(repo_url, sha, Path(tmp) / "r", {"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin"}, 60)
        return environment.decide(Path(tmp) / "r").env_hash


def test_a_content_only_commit_runs_thin_build_in_the_pod(app: Flask, kube: KubeReplay, git_server: GitServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    repo, launch, first = _setup(app, git_server)
    name = build_pod_name(repo.build_slug(), launch["resolved_ref"])
    _script(kube, name)
    monkeypatch.setattr(KubernetesBuilder, "_image_exists", lambda self, image: image.endswith(first))
    events: list[dict[str, Any]] = []
    with app.app_context():
        KubernetesBuilder(kube.api(), app.config["BINDERY"]).build(repo, launch, events.append)
    assert events[0]["message"] == f"environment unchanged since {first}: reused\n"
    (created,) = kube.calls("POST", "/pods")
    kubernetes_validate.validate(created["body"], "1.37.0", strict=True)
    args = created["body"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["python3", f"{CONFIG_DIR}/thin_build.py"]
    plan = json.loads(args[2])
    assert plan["base_image"].endswith(first) and plan["image"] == launch["image"]
    assert plan["base_ref"] == first and plan["kind"] == "buildpack" and plan["push"] is False
    (config_map,) = kube.calls("POST", "/configmaps")
    assert "def thin_dockerfile" in config_map["body"]["data"]["thin_build.py"]


def test_a_failed_thin_pod_falls_back_to_repo2docker(app: Flask, kube: KubeReplay, git_server: GitServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    repo, launch, _ = _setup(app, git_server)
    name = build_pod_name(repo.build_slug(), launch["resolved_ref"])
    _script(kube, name, False, True)
    monkeypatch.setattr(KubernetesBuilder, "_image_exists", lambda self, image: True)
    events: list[dict[str, Any]] = []
    with app.app_context():
        KubernetesBuilder(kube.api(), app.config["BINDERY"]).build(repo, launch, events.append)
    thin, full = kube.calls("POST", "/pods")
    assert thin["body"]["spec"]["containers"][0]["args"][0] == "python3"
    assert "--" in full["body"]["spec"]["containers"][0]["args"]  # repo2docker's command
    assert any(e["message"].startswith("Full build: the thin image failed") for e in events)


def test_without_a_known_environment_the_pod_runs_repo2docker(app: Flask, kube: KubeReplay,
                                                              git_server: GitServer) -> None:
    repo, launch, _ = _setup(app, git_server)
    with app.app_context():
        from app.extensions import redis_client

        for key in redis_client.client.scan_iter("bindery:environment:*"):
            redis_client.client.delete(key)
        name = build_pod_name(repo.build_slug(), launch["resolved_ref"])
        _script(kube, name)
        events: list[dict[str, Any]] = []
        KubernetesBuilder(kube.api(), app.config["BINDERY"]).build(repo, launch, events.append)
        assert events[0]["message"].startswith("Full build: environment")
        (created,) = kube.calls("POST", "/pods")
        assert created["body"]["spec"]["containers"][0]["args"][0] != "python3"
        # the full build is remembered: the next content-only commit can start from it
        assert environment.recall(redis_client.client, launch["repo_url"], _env_hash(launch["repo_url"],
                                                                                     launch["resolved_ref"]))
