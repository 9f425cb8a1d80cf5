"""The kubernetes builder: the pod spec it builds, and its API flows.

What is real here: the official ``kubernetes`` client and its HTTP, the pod
spec Bindery generates (validated offline against the Kubernetes 1.37 schema
by kubernetes-validate). What is not: no API server can run on this machine,
so the create / 409-attach / log-follow / watch / cleanup flows run against
``tests.kube_replay``, a loopback server replaying recorded API responses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException

from app import create_app
from app.config import load_config
from app.errors import BuildError
from providers import get_provider
from tasks.backends.kubernetes_builder import (
    CONFIG_MAP,
    SELECTOR,
    KubernetesBuilder,
    build_pod_name,
    config_map_manifest,
    pod_manifest,
    rendezvous_node,
    secret_manifest,
)
from tests.conftest import LOOPBACK_ALLOWED
from tests.kube_replay import KubeReplay, Response, pod, status, watch_events

SHA = "0123456789abcdef0123456789abcdef01234567"
NS = "binder"
PODS = f"/api/v1/namespaces/{NS}/pods"
K8S_VERSION = "1.37.0"


def _config(**overrides: Any) -> dict[str, Any]:
    return load_config({**LOOPBACK_ALLOWED, "builder": "kubernetes", "kubernetes_namespace": NS, **overrides},
                       environ={})


def _repo(config: dict[str, Any]) -> Any:
    return get_provider("git", "https%3A%2F%2Fexample.org%2Fgroup%2Frepo.git/main", config)


def _launch(config: dict[str, Any]) -> dict[str, Any]:
    return {"resolved_ref": SHA, "image": f"127.0.0.1:5055/bindery-repo:{SHA}"}


def validate(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


# --- names and placement -----------------------------------------------------------------------

def test_pod_name_is_deterministic_and_dns_safe() -> None:
    slug = "https://github.com/Some_Org/A.Very.Long-Repository_Name.That.Goes.On.And.On.git"
    name = build_pod_name(slug, SHA)
    assert name == build_pod_name(slug, SHA)
    assert name.startswith("build-https-3a-2f-2fgithub") and name.endswith("-012345")
    assert len(name) <= 63
    assert build_pod_name(slug, "f" * 40) != name


@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=60))
def test_any_slug_and_ref_give_a_dns_label(slug: str, ref: str) -> None:
    name = build_pod_name(slug, ref)
    assert len(name) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)  # RFC 1123 label, as pod names must be


def test_rendezvous_hashing_is_stable_and_moves_few_repos() -> None:
    nodes = [f"node-{i}" for i in range(5)]
    repos = [f"https://example.org/r{i}" for i in range(200)]
    before = {repo: rendezvous_node(repo, nodes) for repo in repos}
    assert before == {repo: rendezvous_node(repo, list(reversed(nodes))) for repo in repos}
    assert len(set(before.values())) == 5  # spread over all nodes
    after = {repo: rendezvous_node(repo, nodes[:-1]) for repo in repos}
    moved = [repo for repo in repos if before[repo] != after[repo]]
    assert all(before[repo] == "node-4" for repo in moved)  # only the removed node's repos move
    assert rendezvous_node("x", []) is None


# --- the pod spec ------------------------------------------------------------------------------

class RecordingApi:
    """An injected CoreV1Api stand-in that records what the builder sends (unit tests only)."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def create_namespaced_config_map(self, namespace: str, body: dict[str, Any]) -> None:
        self.created.append(body)

    def create_namespaced_pod(self, namespace: str, body: dict[str, Any]) -> None:
        self.created.append({**body, "namespace": namespace})
        raise ApiException(status=403, reason="Forbidden")  # stop the flow here: the spec is what we test


def test_pod_spec_carries_the_docker_builders_arguments_and_the_cluster_settings() -> None:
    config = _config(
        registry_url="http://127.0.0.1:5055", build_pod_image="localhost/repo2docker:2024.7.0",
        build_pod_engine_socket="/var/run/dind/docker.sock", build_pod_push_secret="bindery-push",
        build_pod_node_selector={"pool": "builds"},
        build_pod_tolerations=[{"key": "builds", "operator": "Exists", "effect": "NoSchedule"}],
        build_pod_affinity={"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                               "labelSelector": {"matchLabels": {"app": "x"}}}}]}},
        build_pod_sticky=True, build_pod_nodes=["n1", "n2", "n3"],
        build_pod_requests={"cpu": "500m", "memory": "1Gi"}, build_pod_limits={"memory": "4Gi"},
        build_timeout=900, build_pod_service_account="bindery-build",
    )
    api = RecordingApi()
    with pytest.raises(BuildError, match="403 Forbidden"):
        KubernetesBuilder(api, config).build(_repo(config), _launch(config), lambda event: None)
    config_map, manifest = api.created
    assert manifest.pop("namespace") == NS
    validate(manifest)
    validate(config_map)
    assert config_map["metadata"]["name"] == CONFIG_MAP
    assert "extra_build_kwargs" in config_map["data"]["repo2docker_config.py"]

    spec = manifest["spec"]
    (container,) = spec["containers"]
    assert manifest["metadata"]["name"] == build_pod_name("https://example.org/group/repo.git", SHA)
    assert container["image"] == "localhost/repo2docker:2024.7.0"
    args = container["args"]
    assert args[0] == "jupyter-repo2docker"
    assert args[-2:] == ["--", "https://example.org/group/repo.git"]
    assert args[args.index("--config") + 1] == "/etc/bindery-repo2docker/repo2docker_config.py"
    assert args[args.index("--ref") + 1] == SHA
    assert args[args.index("--image-name") + 1] == f"127.0.0.1:5055/bindery-repo:{SHA}"
    assert "--push" in args[:args.index("--")] and "--json-logs" in args and "--no-run" in args
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["DOCKER_HOST"] == "unix:///var/run/docker.sock"
    assert env["DOCKER_CONFIG"] == "/root/.docker"
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert volumes["engine-socket"]["hostPath"] == {"path": "/var/run/dind/docker.sock", "type": "Socket"}
    assert volumes["push-secret"]["secret"] == {"secretName": "bindery-push"}
    assert volumes["repo2docker-config"]["configMap"] == {"name": CONFIG_MAP}
    assert {m["mountPath"] for m in container["volumeMounts"]} == \
        {"/var/run/docker.sock", "/root/.docker", "/etc/bindery-repo2docker"}
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    assert spec["nodeSelector"] == {"pool": "builds"}
    assert spec["tolerations"][0]["key"] == "builds"
    assert spec["activeDeadlineSeconds"] == 900 and spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == "bindery-build"
    assert "podAntiAffinity" in spec["affinity"]
    (preferred,) = spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    expected_node = rendezvous_node("https://example.org/group/repo.git", ["n1", "n2", "n3"])
    assert preferred["preference"]["matchExpressions"][0]["values"] == [expected_node]
    for key, value in (kv.split("=") for kv in SELECTOR.split(",")):
        assert manifest["metadata"]["labels"][key] == value


def test_minimal_pod_spec_has_no_optional_parts() -> None:
    config = _config()
    manifest = pod_manifest(config, _repo(config), _launch(config))
    validate(manifest)
    spec = manifest["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "serviceAccountName"):
        assert key not in spec
    (container,) = spec["containers"]
    assert "resources" not in container and "--push" not in container["args"]
    assert {volume["name"] for volume in spec["volumes"]} == {"engine-socket", "repo2docker-config"}
    assert spec["volumes"][0]["hostPath"]["path"] == "/var/run/docker.sock"
    validate(config_map_manifest(config))


def test_credentials_from_the_provider_travel_in_a_secret_not_the_pod_spec() -> None:
    config = _config(github_token="ghp_secret")
    repo = get_provider("gh", "org/repo/main", config)
    manifest = pod_manifest(config, repo, _launch(config), secret="build-x-0a1b2c3d")
    validate(manifest)
    assert "ghp_secret" not in str(manifest), "anyone who may read pods would see it"
    env = {item["name"]: item for item in manifest["spec"]["containers"][0]["env"]}
    assert env["GIT_CREDENTIAL_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "build-x-0a1b2c3d", "key": "GIT_CREDENTIAL_PASSWORD"}}
    assert env["GIT_CONFIG_COUNT"]["value"] == "1"  # the helper's settings are no secret: inline
    secret = secret_manifest("build-x-0a1b2c3d", {"GIT_CREDENTIAL_PASSWORD": "ghp_secret"})
    validate(secret)
    assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "bindery-build"  # cleanup finds it


# --- flows against recorded API responses (replay) ---------------------------------------------

@pytest.fixture
def kube() -> Iterator[KubeReplay]:
    with KubeReplay() as server:
        yield server


def _log_lines(*messages: tuple[str, str]) -> list[bytes]:
    import json
    return [json.dumps({"phase": phase, "message": message}).encode() + b"\n" for phase, message in messages]


def _name(config: dict[str, Any]) -> str:
    return build_pod_name("https://example.org/group/repo.git", SHA)


def test_create_follow_logs_watch_and_delete(kube: KubeReplay) -> None:
    config = _config()
    name = _name(config)
    kube.on("POST", f"/api/v1/namespaces/{NS}/configmaps", Response(201, config_map_manifest(config)))
    kube.on("POST", PODS, Response(201, pod(name, "Pending")))
    kube.on("GET", PODS, Response(200, chunks=watch_events(("ADDED", pod(name, "Pending")),
                                                          ("MODIFIED", pod(name, "Running")))),
            Response(200, chunks=watch_events(("MODIFIED", pod(name, "Succeeded", exit_code=0)))), watch=True)
    # the log arrives in chunks that split a line in two, as a follow stream does
    lines = b"".join(_log_lines(("fetching", "Cloning into repo...\n"), ("building", "STEP 1/3: FROM base\n"))) \
        + b"plain line from docker\n"
    kube.on("GET", f"{PODS}/{name}/log", Response(200, chunks=[lines[:30], lines[30:77], lines[77:]],
                                                     content_type="text/plain"))
    kube.on("DELETE", f"{PODS}/{name}", Response(200, pod(name, "Succeeded")))
    events: list[dict[str, Any]] = []
    KubernetesBuilder(kube.api(), config).build(_repo(config), _launch(config), events.append)

    assert [e["phase"] for e in events] == ["waiting", "fetching", "building", "building"]
    assert events[1]["message"] == "Cloning into repo...\n"
    assert events[3]["message"] == "plain line from docker\n"
    (created,) = kube.calls("POST", "/pods")
    validate(created["body"])
    assert created["body"]["metadata"]["name"] == name
    watches = [r for r in kube.calls("GET", "/pods") if r["query"].get("watch")]
    assert watches[0]["query"]["fieldSelector"] == f"metadata.name={name}"
    (log_request,) = kube.calls("GET", "/log")
    assert log_request["query"]["follow"] in ("true", "True")
    assert len(kube.calls("DELETE", f"/pods/{name}")) == 1


def test_409_attaches_to_the_running_build(kube: KubeReplay) -> None:
    config = _config()
    name = _name(config)
    kube.on("POST", f"/api/v1/namespaces/{NS}/configmaps",
            Response(409, status(409, "AlreadyExists", f'configmaps "{CONFIG_MAP}" already exists', CONFIG_MAP,
                                 "configmaps")))
    kube.on("PUT", f"/api/v1/namespaces/{NS}/configmaps/{CONFIG_MAP}", Response(200, config_map_manifest(config)))
    kube.on("POST", PODS, Response(409, status(409, "AlreadyExists", f'pods "{name}" already exists', name)))
    kube.on("GET", f"{PODS}/{name}", Response(200, pod(name, "Running")))
    kube.on("GET", PODS, Response(200, chunks=watch_events(("ADDED", pod(name, "Running")))),
            Response(200, chunks=watch_events(("ADDED", pod(name, "Succeeded", exit_code=0)))), watch=True)
    kube.on("GET", f"{PODS}/{name}/log",
            Response(200, chunks=_log_lines(("building", "Successfully built\n")), content_type="text/plain"))
    kube.on("DELETE", f"{PODS}/{name}", Response(200, pod(name, "Succeeded")))
    events: list[dict[str, Any]] = []
    KubernetesBuilder(kube.api(), config).build(_repo(config), _launch(config), events.append)

    assert "already running; following it" in events[0]["message"]
    assert events[-1] == {"phase": "building", "message": "Successfully built\n"}
    assert len(kube.calls("POST", "/pods")) == 1  # no second build
    assert len(kube.calls("PUT", f"/configmaps/{CONFIG_MAP}")) == 1


def test_409_on_a_failed_pod_replaces_it(kube: KubeReplay) -> None:
    config = _config()
    name = _name(config)
    kube.on("POST", f"/api/v1/namespaces/{NS}/configmaps", Response(201, config_map_manifest(config)))
    kube.on("POST", PODS, Response(409, status(409, "AlreadyExists", f'pods "{name}" already exists', name)),
            Response(201, pod(name, "Pending")))
    kube.on("GET", f"{PODS}/{name}", Response(200, pod(name, "Failed", exit_code=1)),
            Response(404, status(404, "NotFound", f'pods "{name}" not found', name)))
    kube.on("DELETE", f"{PODS}/{name}", Response(200, pod(name, "Failed")))
    kube.on("GET", PODS, Response(200, chunks=watch_events(("ADDED", pod(name, "Succeeded", exit_code=0)))),
            watch=True)
    kube.on("GET", f"{PODS}/{name}/log", Response(200, chunks=[b"done\n"], content_type="text/plain"))
    KubernetesBuilder(kube.api(), config).build(_repo(config), _launch(config), lambda event: None)
    assert len(kube.calls("POST", "/pods")) == 2


def test_a_failed_build_pod_fails_the_build_with_its_log(kube: KubeReplay) -> None:
    config = _config(build_log_tail=2)
    name = _name(config)
    kube.on("POST", f"/api/v1/namespaces/{NS}/configmaps", Response(201, config_map_manifest(config)))
    kube.on("POST", PODS, Response(201, pod(name, "Pending")))
    kube.on("GET", PODS, Response(200, chunks=watch_events(("ADDED", pod(name, "Running")),
                                                          ("MODIFIED", pod(name, "Failed", exit_code=1)))),
            watch=True)
    kube.on("GET", f"{PODS}/{name}/log", Response(200, chunks=_log_lines(
        ("building", "step 1\n"), ("building", "step 2\n"), ("failed", "Error: no such file\n")),
        content_type="text/plain"))
    kube.on("DELETE", f"{PODS}/{name}", Response(200, pod(name, "Failed")))
    with pytest.raises(BuildError) as caught:
        KubernetesBuilder(kube.api(), config).build(_repo(config), _launch(config), lambda event: None)
    assert "repo2docker exited with 1" in caught.value.message
    assert caught.value.message.endswith("step 2\nError: no such file\n")
    assert len(kube.calls("DELETE", f"/pods/{name}")) == 1


SECRETS = f"/api/v1/namespaces/{NS}/secrets"


def _token_repo(config: dict[str, Any]) -> Any:
    return get_provider("gh", "org/repo/main", config)


def test_credentials_go_into_a_secret_the_build_pod_owns(kube: KubeReplay) -> None:
    config = _config(github_token="ghp_secret_token")
    repo = _token_repo(config)
    name = build_pod_name(repo.build_slug(), SHA)
    kube.on("POST", f"/api/v1/namespaces/{NS}/configmaps", Response(201, config_map_manifest(config)))
    kube.on("POST", SECRETS, Response(201, {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s"}}))
    kube.on("POST", PODS, Response(201, pod(name, "Pending")))
    kube.on("GET", PODS, Response(200, chunks=watch_events(("ADDED", pod(name, "Succeeded", exit_code=0)))),
            watch=True)
    kube.on("GET", f"{PODS}/{name}/log", Response(200, chunks=[b"done\n"], content_type="text/plain"))
    kube.on("DELETE", f"{PODS}/{name}", Response(200, pod(name, "Succeeded")))
    kube.on("PATCH", f"{SECRETS}/", Response(200, {"kind": "Secret", "apiVersion": "v1", "metadata": {}}))
    # the secret's name has a random suffix: answer a PATCH of any secret under the namespace
    kube.prefix_routes.append(("PATCH", f"{SECRETS}/"))
    KubernetesBuilder(kube.api(), config).build(repo, _launch(config), lambda event: None)

    (created_secret,) = kube.calls("POST", "/secrets")
    secret = created_secret["body"]
    assert secret["metadata"]["name"].startswith(f"{name}-") and secret["type"] == "Opaque"
    assert "ghp_secret_token" in secret["stringData"].values()
    (created_pod,) = kube.calls("POST", "/pods")
    validate(created_pod["body"])
    assert "ghp_secret_token" not in str(created_pod["body"])
    env = {item["name"]: item for item in created_pod["body"]["spec"]["containers"][0]["env"]}
    assert env["GIT_CREDENTIAL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    (patch,) = kube.calls("PATCH", "/" + secret["metadata"]["name"])
    (owner,) = patch["body"]["metadata"]["ownerReferences"]
    assert owner["kind"] == "Pod" and owner["name"] == name and owner["uid"] == f"uid-{name}"


def test_attaching_to_a_running_build_deletes_the_unused_secret(kube: KubeReplay) -> None:
    config = _config(github_token="ghp_secret_token")
    repo = _token_repo(config)
    name = build_pod_name(repo.build_slug(), SHA)
    kube.on("POST", f"/api/v1/namespaces/{NS}/configmaps", Response(201, config_map_manifest(config)))
    kube.on("POST", SECRETS, Response(201, {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s"}}))
    kube.on("POST", PODS, Response(409, status(409, "AlreadyExists", f'pods "{name}" already exists', name)))
    kube.on("GET", f"{PODS}/{name}", Response(200, pod(name, "Running")))
    kube.on("GET", PODS, Response(200, chunks=watch_events(("ADDED", pod(name, "Succeeded", exit_code=0)))),
            watch=True)
    kube.on("GET", f"{PODS}/{name}/log", Response(200, chunks=[b"done\n"], content_type="text/plain"))
    kube.on("DELETE", f"{PODS}/{name}", Response(200, pod(name, "Succeeded")))
    kube.on("DELETE", f"{SECRETS}/", Response(200, status(200, "Success", "deleted")))
    kube.prefix_routes.append(("DELETE", f"{SECRETS}/"))
    KubernetesBuilder(kube.api(), config).build(repo, _launch(config), lambda event: None)
    (created_secret,) = kube.calls("POST", "/secrets")
    assert len(kube.calls("DELETE", "/" + created_secret["body"]["metadata"]["name"])) == 1
    assert not kube.calls("PATCH")


def test_api_errors_become_build_errors(kube: KubeReplay) -> None:
    config = _config()
    kube.on("POST", f"/api/v1/namespaces/{NS}/configmaps",
            Response(403, status(403, "Forbidden", "configmaps is forbidden: User cannot create", "", "configmaps")))
    with pytest.raises(BuildError, match="403"):
        KubernetesBuilder(kube.api(), config).build(_repo(config), _launch(config), lambda event: None)


# --- cleanup beat task -------------------------------------------------------------------------

@pytest.fixture
def kube_app(redis_server: Any, kube: KubeReplay) -> Flask:
    app = create_app({"redis_url": redis_server.url, "launcher": "bench", "builder": "kubernetes",
                      "kubernetes_namespace": NS, "build_pod_max_age": 3600})
    app.extensions["bindery.kubernetes"] = {"api": kube.api()}  # the factory's per-process slot
    return app


def test_cleanup_beat_task_deletes_finished_and_old_pods(kube_app: Flask, kube: KubeReplay) -> None:
    from tasks.beat.cleanup_build_pods import cleanup_build_pods

    items = [pod("build-done", "Succeeded", exit_code=0), pod("build-broken", "Failed", exit_code=2),
             pod("build-ancient", "Running", created="2020-01-01T00:00:00Z"),
             pod("build-fresh", "Running", created="2999-01-01T00:00:00Z")]
    kube.on("GET", PODS, Response(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}))
    for name in ("build-done", "build-broken", "build-ancient"):
        kube.on("DELETE", f"{PODS}/{name}", Response(200, pod(name, "Running")))

    def secret(name: str, created: str, owned: bool) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name, "namespace": NS, "creationTimestamp": created}
        if owned:
            metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u"}]
        return {"kind": "Secret", "apiVersion": "v1", "metadata": metadata, "type": "Opaque"}
    kube.on("GET", f"/api/v1/namespaces/{NS}/secrets", Response(200, {
        "kind": "SecretList", "apiVersion": "v1", "metadata": {}, "items": [
            secret("build-orphan-1", "2020-01-01T00:00:00Z", False),  # its worker died before the pod
            secret("build-owned-2", "2020-01-01T00:00:00Z", True),    # goes with its pod
            secret("build-new-3", "2999-01-01T00:00:00Z", False)]}))  # about to get its owner
    kube.on("DELETE", f"/api/v1/namespaces/{NS}/secrets/build-orphan-1", Response(200, status(200, "Success", "")))
    with kube_app.app_context():
        assert cleanup_build_pods() == 3
    (secret_listing,) = kube.calls("GET", "/secrets")
    assert secret_listing["query"]["labelSelector"] == SELECTOR
    assert [r["path"].rsplit("/", 1)[1] for r in kube.calls("DELETE") if "/secrets/" in r["path"]] == [
        "build-orphan-1"]
    (listing,) = kube.calls("GET", "/pods")
    assert listing["query"]["labelSelector"] == SELECTOR
    assert {r["path"].rsplit("/", 1)[1] for r in kube.calls("DELETE", "") if "/pods/" in r["path"]} == {
        "build-done", "build-broken", "build-ancient"}
    assert all(r["query"].get("gracePeriodSeconds") == "0" for r in kube.calls("DELETE") if "/pods/" in r["path"])


def test_two_settings_switch_the_backends(kube_app: Flask) -> None:
    """builder=kubernetes and launcher=jupyterhub: the chain's factories hand out the cluster path."""
    import celeryconfig
    from tasks import backends
    from tasks.backends.jupyterhub_launcher import JupyterHubLauncher

    with kube_app.app_context():
        config = {**kube_app.config["BINDERY"], "launcher": "jupyterhub", "hub_url": "http://127.0.0.1:9/",
                  "hub_api_token": "t" * 32}
        assert isinstance(backends.builder(config), KubernetesBuilder)
        assert isinstance(backends.launcher(config), JupyterHubLauncher)
    schedule = celeryconfig.from_settings(kube_app.config["BINDERY"])["beat_schedule"]
    assert schedule["cleanup-build-pods"]["task"] == "bindery.cleanup_build_pods"
    assert "cleanup-build-pods" not in celeryconfig.from_settings(_config(builder="docker"))["beat_schedule"]


def test_an_ssh_repository_is_refused_clearly_before_any_pod(kube: KubeReplay, tmp_path: Any) -> None:
    key, known_hosts = tmp_path / "id", tmp_path / "known_hosts"
    key.write_text("not a real key\n")
    known_hosts.write_text("")
    config = _config(git_ssh_key=str(key), git_ssh_known_hosts=str(known_hosts))
    repo = get_provider("git", "ssh%3A%2F%2Fgit%40127.0.0.1%3A2222%2Fgroup%2Frepo.git/main", config)
    with pytest.raises(BuildError) as caught:
        KubernetesBuilder(kube.api(), config).build(repo, _launch(config), lambda event: None)
    assert caught.value.status_code == 400 and "https URL" in caught.value.message
    assert str(key) not in caught.value.message
    assert kube.requests == [], "nothing was asked of the API"


def test_every_variable_appears_once_in_the_pod_env() -> None:
    config = _config()
    env = pod_manifest(config, _repo(config), _launch(config))["spec"]["containers"][0]["env"]
    names = [item["name"] for item in env]
    assert len(names) == len(set(names)), names
    assert {"name": "GIT_TERMINAL_PROMPT", "value": "0"} in env
