"""The Helm chart, rendered and linted by Helm's own Go engine (helm-python-sdk, no cluster).

Real: Helm's template engine, lint and values.schema.json check; every rendered manifest
validated against the Kubernetes 1.37 schema (kubernetes-validate, strict); the Bindery
config the chart produces loaded by app.config.load_config exactly as a pod would
(BINDERY_CONFIG file from the ConfigMap, BINDERY_* variables from the Secret).
Not here: the optional zero-to-jupyterhub dependency (it cannot be fetched offline), so
the chart is rendered with jupyterhub.enabled=false and lint reports it missing.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from app.config import load_config

CHART = Path(__file__).resolve().parents[2] / "charts" / "bindery"
GUIDE = Path(__file__).resolve().parent / "guide"
K8S_VERSION = "1.37.0"


def merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Deep merge, later wins: what `helm install -f a.yaml -f b.yaml` does with values files."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def guide(*names: str) -> dict[str, Any]:
    return merge(*(yaml.safe_load((GUIDE / name).read_text()) for name in names))


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    chart = helm.Chart.load(CHART)
    rendered = chart.render(values or {}, name="bindery", namespace="binder", is_install=True)
    docs = [doc for path, text in sorted(rendered.items()) if path.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    return docs


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"{kind} {name}: {[d['metadata']['name'] for d in matches]}"
    return matches[0]


def secret_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    data = find(docs, "Secret", "bindery").get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def bindery_config(docs: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    """The settings a Bindery pod of this release would run with."""
    path = tmp_path / "bindery.yaml"
    path.write_text(find(docs, "ConfigMap", "bindery")["data"]["bindery.yaml"])
    return load_config(environ={"BINDERY_CONFIG": str(path), **secret_env(docs)})


def deployments(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}


# --- defaults ----------------------------------------------------------------------------------

def test_default_values_render_valid_manifests_and_a_loadable_config(tmp_path: Path) -> None:
    docs = render()
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == ["ConfigMap", "DaemonSet", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Role",
                     "RoleBinding", "Secret", "Service", "ServiceAccount", "StatefulSet"]
    assert set(deployments(docs)) == {"bindery-web", "bindery-worker-build", "bindery-worker-launch",
                                      "bindery-beat", "bindery-flower"}
    config = bindery_config(docs, tmp_path)
    assert config["builder"] == "kubernetes" and config["launcher"] == "docker"
    password = secret_env(docs)["REDIS_PASSWORD"]
    assert config["redis_url"] == f"redis://:{password}@bindery-redis:6379/0"
    assert config["kubernetes_namespace"] == "binder" and config["listen_address"] == "0.0.0.0"
    assert config["build_pod_engine_socket"] == "/var/run/dind/docker.sock"  # dind: RUN lines fenced
    assert config["registry_url"] is None

    web = deployments(docs)["bindery-web"]["spec"]["template"]
    (container,) = web["spec"]["containers"]
    assert container["command"] == ["dumb-init", "--", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    # a dependency outage (registry, GitHub) must not take the web out of service: /health is for monitors
    assert container["readinessProbe"]["httpGet"]["path"] == "/versions"
    assert container["livenessProbe"]["httpGet"]["path"] == "/versions"
    for deployment in deployments(docs).values():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert set(annotations) == {"checksum/config", "checksum/secret"}
    commands = {name: d["spec"]["template"]["spec"]["containers"][0]["command"]
                for name, d in deployments(docs).items()}
    assert commands["bindery-worker-build"][3:] == ["-A", "worker", "worker", "-Q", "build", "-P", "prefork", "-c",
                                                     "2", "-n", "build@%h"]
    assert "gevent" in commands["bindery-worker-launch"] and "beat" in commands["bindery-beat"]
    assert "flower" in commands["bindery-flower"]

    role = find(docs, "Role")
    rules = {tuple(rule["resources"]): set(rule["verbs"]) for rule in role["rules"]}
    assert rules[("pods",)] == {"create", "get", "list", "watch", "delete"}
    assert rules[("pods/log",)] == {"get"}
    redis = find(docs, "StatefulSet")
    assert redis["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert find(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_a_config_change_changes_the_checksum_so_pods_restart() -> None:
    def checksums(values: dict[str, Any]) -> dict[str, str]:
        web = deployments(render(values))["bindery-web"]
        return dict(web["spec"]["template"]["metadata"]["annotations"])

    base = checksums({})
    assert checksums({"config": {"quota_total": 5}})["checksum/config"] != base["checksum/config"]
    changed = checksums({"github": {"accessToken": "ghp_x"}})
    assert changed["checksum/secret"] != base["checksum/secret"]
    assert changed["checksum/config"] == base["checksum/config"]  # secrets stay out of the ConfigMap


# --- variants ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("engine", "socket", "args0"), [
    ("dind", "/var/run/dind/docker.sock", "dockerd"),
    ("podman", "/var/run/podman/podman.sock", "podman"),
])
def test_engine_daemonsets(engine: str, socket: str, args0: str, tmp_path: Path) -> None:
    docs = render({"builder": {"engine": engine}})
    daemonset = find(docs, "DaemonSet")
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"]["privileged"] is True and container["args"][0] == args0
    assert socket in " ".join(container["args"])
    assert bindery_config(docs, tmp_path)["build_pod_engine_socket"] == socket


def notes(values: dict[str, Any] | None = None) -> str:
    """What `helm install` prints after installing (templates/NOTES.txt)."""
    rendered = helm.Chart.load(CHART).render(values or {}, name="bindery", namespace="binder", is_install=True)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def test_host_engine_is_an_explicit_choice_and_warned_about(tmp_path: Path) -> None:
    docs = render({"builder": {"engine": "host"}})
    assert not [d for d in docs if d["kind"] == "DaemonSet"]
    assert bindery_config(docs, tmp_path)["build_pod_engine_socket"] == "/var/run/docker.sock"
    warning = notes({"builder": {"engine": "host"}})
    assert "WARNING: builder.engine is `host`" in warning and "outside every NetworkPolicy" in warning
    assert "WARNING" not in notes() and "WARNING" not in notes({"builder": {"engine": "podman"}})


def test_builds_use_the_engines_own_network_on_a_cluster(tmp_path: Path) -> None:
    """build_network stays `isolated`: no network_mode, so RUN lines get the engine's default network
    (dind's bridge, Podman's pod namespace), which the engine pod's NetworkPolicy fences; `host` there
    would be the engine pod's network too, never the node's."""
    from tasks.backends import user_network
    from tasks.backends.docker_builder import repo2docker_config

    config = bindery_config(render(), tmp_path)
    assert config["build_network"] == "isolated" and "build_network" not in find(render(), "ConfigMap", "bindery")[
        "data"]["bindery.yaml"]
    assert user_network.build_kwargs(config) == {}
    assert repo2docker_config(config).startswith("c.Repo2Docker.extra_build_kwargs = {}\n")


def test_external_redis(tmp_path: Path) -> None:
    docs = render({"redis": {"enabled": False, "externalUrl": "redis://:pw@redis.example:6379/1"}})
    assert not [d for d in docs if d["kind"] == "StatefulSet"]
    assert "redis" not in find(docs, "ConfigMap")["data"]["bindery.yaml"]
    assert bindery_config(docs, tmp_path)["redis_url"] == "redis://:pw@redis.example:6379/1"
    assert "REDIS_PASSWORD" not in secret_env(docs)


CLIENTS = {"bindery-web", "bindery-worker-build", "bindery-worker-launch", "bindery-beat", "bindery-flower"}


def test_bundled_redis_asks_for_a_password_that_only_the_secret_holds(tmp_path: Path) -> None:
    docs = render()
    env = secret_env(docs)
    password = env["REDIS_PASSWORD"]
    assert len(password) == 32 and password.isalnum()
    assert env["REDIS_URL"] == f"redis://:{password}@bindery-redis:6379/0"
    # nowhere but the Secret: not the ConfigMap, not a command line, not an env value in a pod spec
    for doc in docs:
        if doc["kind"] != "Secret":
            assert password not in json.dumps(doc), f"{doc['kind']} {doc['metadata']['name']}"
    assert "redis" not in find(docs, "ConfigMap", "bindery")["data"]["bindery.yaml"]

    (redis,) = find(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    refs = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in redis["env"]}
    assert refs == {name: {"name": "bindery", "key": "REDIS_PASSWORD"} for name in ("REDIS_PASSWORD", "REDISCLI_AUTH")}
    assert "requirepass $REDIS_PASSWORD" in redis["command"][-1] and "args" not in redis
    # every client reads REDIS_URL (an alias of redis_url) from the Secret
    clients = deployments(docs)
    assert set(clients) == CLIENTS
    for name, deployment in clients.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert {"secretRef": {"name": "bindery"}} in container["envFrom"], name
    assert bindery_config(docs, tmp_path)["redis_url"] == env["REDIS_URL"]


def test_an_explicit_redis_password_is_used_and_restarts_redis_when_changed() -> None:
    def rendered(password: str) -> tuple[dict[str, str], str]:
        docs = render({"redis": {"password": password}})
        annotations = find(docs, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
        return secret_env(docs), annotations["checksum/redis-password"]

    first, first_checksum = rendered("first-redis-password-0123")
    assert first["REDIS_PASSWORD"] == "first-redis-password-0123"
    assert first["REDIS_URL"] == "redis://:first-redis-password-0123@bindery-redis:6379/0"
    again, again_checksum = rendered("first-redis-password-0123")
    assert again == first and again_checksum == first_checksum
    assert rendered("second-redis-password-45")[1] != first_checksum
    # Without one, a password is made at install; an upgrade keeps the Secret's (Helm's lookup,
    # which needs a cluster: offline every render makes a new one).
    assert secret_env(render())["REDIS_PASSWORD"] != secret_env(render())["REDIS_PASSWORD"]


def test_the_charts_redis_command_refuses_clients_without_the_password(tmp_path: Path) -> None:
    """The StatefulSet's command and probe, run against this machine's redis-server."""
    import shutil
    import socket
    import subprocess
    import time

    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        pytest.skip("redis-server and redis-cli are not installed")
    docs = render()
    password = secret_env(docs)["REDIS_PASSWORD"]
    (redis,) = find(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    with socket.socket() as probe_port:
        probe_port.bind(("127.0.0.1", 0))
        port = probe_port.getsockname()[1]
    where = f"--dir {tmp_path} --port {port} --bind 127.0.0.1"
    script = redis["command"][-1].replace("--dir /data", where)
    server = subprocess.Popen([*redis["command"][:-1], script], env={"PATH": "/usr/bin:/bin",
                              "REDIS_PASSWORD": password}, stdout=subprocess.DEVNULL)
    try:
        probe = redis["readinessProbe"]["exec"]["command"]
        probe = [*probe[:-1], probe[-1].replace("redis-cli", f"redis-cli -p {port}")]
        for _ in range(100):
            if subprocess.run(probe, env={"PATH": "/usr/bin:/bin", "REDISCLI_AUTH": password}).returncode == 0:
                break
            server.poll()
            assert server.returncode is None, "redis-server exited"
            time.sleep(0.1)
        else:
            pytest.fail("the readiness probe never passed with the password")
        assert subprocess.run(probe, env={"PATH": "/usr/bin:/bin"}).returncode != 0, "ready without the password"
        refused = subprocess.run(["redis-cli", "-p", str(port), "DBSIZE"], capture_output=True, text=True)
        assert "NOAUTH" in refused.stdout + refused.stderr
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode()
        assert cmdline.startswith("redis-server") and password not in cmdline  # exec'd, and not on its command line
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_ingress() -> None:
    docs = render({"ingress": {"enabled": True, "host": "binder.example.org", "className": "nginx",
                               "tlsSecretName": "binder-tls"}})
    ingress = find(docs, "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == "binder.example.org"
    assert ingress["spec"]["tls"][0]["secretName"] == "binder-tls"
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "bindery"


def test_build_pod_settings_reach_the_config(tmp_path: Path) -> None:
    docs = render({"builder": {"nodeSelector": {"pool": "builds"}, "stickyBuilds": True, "nodes": ["n1", "n2"],
                               "tolerations": [{"key": "builds", "operator": "Exists"}],
                               "requests": {"cpu": "1"}, "limits": {"memory": "4Gi"}}})
    config = bindery_config(docs, tmp_path)
    assert config["build_pod_node_selector"] == {"pool": "builds"}
    assert config["build_pod_sticky"] is True and config["build_pod_nodes"] == ["n1", "n2"]
    assert config["build_pod_requests"] == {"cpu": "1"} and config["build_pod_limits"] == {"memory": "4Gi"}


# --- network policies --------------------------------------------------------------------------

PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]


def policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions with In) against a pod's labels."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def egress_allows(spec: dict[str, Any], address: str, port: int, protocol: str = "TCP") -> bool:
    """Whether the policy lets its pods open ``address:port``. A peer chosen by selector may be any pod,
    so it counts as reaching every private address (where the cluster's pods and services live)."""
    import ipaddress

    ip = ipaddress.ip_address(address)
    in_private = any(ip in ipaddress.ip_network(cidr) for cidr in PRIVATE)
    for rule in spec["egress"]:
        ports = rule.get("ports")
        if ports and not any(p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports):
            continue
        peers = rule.get("to")
        if not peers:
            return True
        for peer in peers:
            block = peer.get("ipBlock")
            if block is None:
                if in_private:
                    return True
            elif ip in ipaddress.ip_network(block["cidr"]) and not any(
                    ip in ipaddress.ip_network(cidr) for cidr in block.get("except", [])):
                return True
    return False


# what user code must not reach, and what it must
REFUSED = [("10.0.0.12", 6379), ("10.96.0.1", 443), ("172.20.1.5", 8585), ("192.168.1.10", 5000),
           ("100.64.3.4", 6379), ("169.254.169.254", 80), ("169.254.170.2", 80)]
OPEN = [("151.101.0.223", 443), ("140.82.112.3", 443), ("8.8.8.8", 80)]


def pod_labels(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Each workload's pod labels, and a build pod's (as tasks/backends/kubernetes_builder.py makes them)."""
    from tasks.backends.kubernetes_builder import LABELS

    labels = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in docs
              if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")}
    labels["build-pod"] = {**LABELS, "bindery.org/image": "0123456789abcdef"}
    return labels


def test_network_policies_render_and_validate() -> None:
    docs = render()  # render() validates every manifest against the Kubernetes schema
    assert set(policies(docs)) == {"bindery-build", "bindery-redis", "bindery-web"}
    assert not policies(render({"networkPolicy": {"enabled": False}}))
    assert "WARNING: networkPolicy.enabled is false" in notes({"networkPolicy": {"enabled": False}})
    assert "bindery-redis" not in policies(render({"redis": {"enabled": False,
                                                             "externalUrl": "redis://:pw@redis.example:6379/0"}}))


@pytest.mark.parametrize(("engine", "fenced"), [
    ("dind", {"bindery-dind", "build-pod"}),
    ("podman", {"bindery-podman", "build-pod"}),
    ("host", {"build-pod"}),  # RUN lines run in the node's Docker: no pod to fence (NOTES warns)
])
def test_build_pods_and_the_engine_reach_dns_and_the_internet_only(engine: str, fenced: set[str]) -> None:
    docs = render({"builder": {"engine": engine}})
    spec = policies(docs)["bindery-build"]
    selected = {name for name, labels in pod_labels(docs).items() if selects(spec["podSelector"], labels)}
    assert selected == fenced
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["ingress"] == []  # nothing connects to them
    for address, port in REFUSED:
        assert not egress_allows(spec, address, port), f"{address}:{port}"
    for address, port in OPEN:
        assert egress_allows(spec, address, port), f"{address}:{port}"
    for protocol in ("UDP", "TCP"):  # DNS: kube-dns's service address and pods, and a node-local cache
        assert egress_allows(spec, "10.96.0.10", 53, protocol)
    (internet,) = [rule for rule in spec["egress"] if "ports" not in rule]
    assert internet["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [*PRIVATE, "169.254.0.0/16"]}}]
    (dns,) = [rule for rule in spec["egress"] if "ports" in rule]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}} in dns["to"]


def test_build_egress_opens_as_zero_to_jupyterhubs_egress_allow_rules() -> None:
    def build_policy(**rules: Any) -> dict[str, Any]:
        extra = rules.pop("egress", [])
        return policies(render({"networkPolicy": {"build": {"egressAllowRules": rules, "egress": extra}}}))[
            "bindery-build"]

    private = build_policy(privateIPs=True)
    assert egress_allows(private, "10.0.0.12", 6379) and egress_allows(private, "100.64.3.4", 5000)
    assert not egress_allows(private, "169.254.169.254", 80)
    metadata = build_policy(cloudMetadataServer=True)
    assert egress_allows(metadata, "169.254.169.254", 80)
    assert not egress_allows(metadata, "169.254.170.2", 80) and not egress_allows(metadata, "10.0.0.12", 6379)
    closed = build_policy(nonPrivateIPs=False, dnsPortsCloudMetadataServer=False, dnsPortsKubeSystemNamespace=False,
                          dnsPortsPrivateIPs=False)
    assert closed["egress"] == []  # nothing at all
    registry = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "registry"}}}],
                "ports": [{"port": 5000, "protocol": "TCP"}]}
    opened = build_policy(egress=[registry])
    assert opened["egress"][-1] == registry and egress_allows(opened, "10.4.0.9", 5000)
    assert not egress_allows(opened, "10.0.0.12", 6379)


def test_redis_accepts_only_the_web_workers_beat_and_flower() -> None:
    for engine in ("dind", "host"):
        docs = render({"builder": {"engine": engine}})
        spec = policies(docs)["bindery-redis"]
        assert spec["policyTypes"] == ["Ingress"]
        labels = pod_labels(docs)
        assert {name for name, pod in labels.items() if selects(spec["podSelector"], pod)} == {"bindery-redis"}
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"port": 6379, "protocol": "TCP"}]
        allowed = {name for name, pod in labels.items() for peer in rule["from"] if selects(peer["podSelector"], pod)}
        assert allowed == CLIENTS
        assert all(set(peer) == {"podSelector"} for peer in rule["from"])  # this namespace only
        # another release's pods, and a hub's users' pods, are not Bindery's clients
        assert not selects(rule["from"][0]["podSelector"], {**labels["bindery-web"], "app.kubernetes.io/instance": "x"})
        assert not selects(rule["from"][0]["podSelector"], {"component": "singleuser-server", "app": "jupyterhub"})
    exporter = {"from": [{"podSelector": {"matchLabels": {"app": "exporter"}}}]}
    docs = render({"flower": {"enabled": False}, "networkPolicy": {"redis": {"ingress": [exporter]}}})
    spec = policies(docs)["bindery-redis"]
    assert "flower" not in spec["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]["values"]
    assert spec["ingress"][1] == exporter


def test_the_web_accepts_its_port_from_the_ingress() -> None:
    docs = render()
    spec = policies(docs)["bindery-web"]
    assert {name for name, pod in pod_labels(docs).items() if selects(spec["podSelector"], pod)} == {"bindery-web"}
    assert spec["ingress"] == [{"ports": [{"port": 8585, "protocol": "TCP"}]}]  # from anywhere
    controller = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    docs = render({"web": {"port": 9000}, "networkPolicy": {"web": {"ingressFrom": controller}}})
    spec = policies(docs)["bindery-web"]
    assert spec["ingress"] == [{"ports": [{"port": 9000, "protocol": "TCP"}], "from": controller}]


def test_users_pods_keep_zero_to_jupyterhubs_network_policy() -> None:
    """The bundled hub's users' servers: no private addresses (Bindery's services), no cloud metadata."""
    values = helm.Chart.load(CHART).merge_values(guide("dockerhub-secret.yaml", "dockerhub-config.yaml"))
    policy = values["jupyterhub"]["singleuser"]["networkPolicy"]
    assert policy["enabled"] is True
    assert policy["egressAllowRules"] == {"privateIPs": False, "cloudMetadataServer": False}


@pytest.mark.parametrize("files", [("dockerhub-secret.yaml", "dockerhub-config.yaml"),
                                   ("gcr-secret.yaml", "gcr-config.yaml"), ("custom-registry.yaml",)])
def test_the_guides_files_render_with_the_policies(files: tuple[str, ...]) -> None:
    docs = render(guide(*files))
    assert set(policies(docs)) == {"bindery-build", "bindery-redis", "bindery-web"}
    assert find(docs, "DaemonSet")["metadata"]["name"] == "bindery-dind"


# --- Zero to BinderHub's files -----------------------------------------------------------------

def _push_auths(docs: list[dict[str, Any]]) -> dict[str, Any]:
    push = find(docs, "Secret", "bindery-push")
    return dict(json.loads(base64.b64decode(push["data"]["config.json"]))["auths"])


def test_zero_to_binderhub_docker_hub_files(tmp_path: Path) -> None:
    docs = render(guide("dockerhub-secret.yaml", "dockerhub-config.yaml"))
    config = bindery_config(docs, tmp_path)
    assert config["registry_url"] == "https://registry-1.docker.io"
    assert config["registry_username"] == "binderbot" and config["registry_password"] == "d0ckerhub-pa55word"
    assert config["image_prefix"] == "binderbot/binder-dev-"
    assert config["hub_url"] == "http://35.200.10.20/" and config["launcher"] == "jupyterhub"
    assert config["hub_api_token"] == "3c3e2bd1a0b9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817060"
    assert config["github_token"] == "ghp_exampleexampleexampleexample0000"
    assert config["build_pod_push_secret"] == "bindery-push"
    auths = _push_auths(docs)
    assert base64.b64decode(auths["https://index.docker.io/v1/"]["auth"]).decode() == "binderbot:d0ckerhub-pa55word"
    configmap = find(docs, "ConfigMap")["data"]["bindery.yaml"]
    for secret in ("d0ckerhub-pa55word", "ghp_example", "3c3e2bd1"):
        assert secret not in configmap
    # the proxy token stays where the zero-to-jupyterhub chart reads it
    merged = helm.Chart.load(CHART).merge_values(guide("dockerhub-secret.yaml", "dockerhub-config.yaml"))
    assert merged["jupyterhub"]["proxy"]["secretToken"].startswith("9a8b7c6d")


def test_zero_to_binderhub_gcr_files(tmp_path: Path) -> None:
    docs = render(guide("gcr-secret.yaml", "gcr-config.yaml"))
    config = bindery_config(docs, tmp_path)
    assert config["registry_url"] == "https://gcr.io"
    assert config["registry_username"] == "_json_key"
    key = json.loads(config["registry_password"])
    assert key["project_id"] == "binder-project" and key["private_key"].startswith("-----BEGIN PRIVATE KEY-----\n")
    assert config["image_prefix"] == "gcr.io/binder-project/binder-prod-"
    assert config["hub_url"] == "http://35.200.10.21/"
    assert config["github_token"] == "ghp_gcrexampleexampleexample00000000"
    auth = base64.b64decode(_push_auths(docs)["https://gcr.io"]["auth"]).decode()
    assert auth.startswith("_json_key:{") and json.loads(auth.split(":", 1)[1])["client_id"] == "1234567890"


def test_gcr_key_pasted_as_a_mapping_is_accepted(tmp_path: Path) -> None:
    """The guide's second printing loses the `|`, so the key parses as a YAML mapping."""
    values = guide("gcr-secret.yaml", "gcr-config.yaml")
    values["registry"]["password"] = json.loads(values["registry"]["password"])
    config = bindery_config(render(values), tmp_path)
    assert config["registry_username"] == "_json_key"
    assert json.loads(config["registry_password"])["client_email"].startswith("binder-push@")


def test_custom_registry_with_token_url(tmp_path: Path) -> None:
    docs = render(guide("custom-registry.yaml"))
    config = bindery_config(docs, tmp_path)
    assert config["registry_url"] == "https://myregistry.io" and config["image_prefix"] == "myregistry.io/binder-"
    assert "https://myregistry.io" in _push_auths(docs)
    # token_url needs no setting: Bindery's registry client reads the token realm from the registry's
    # WWW-Authenticate challenge, which is where BinderHub's token_url points too.


def test_explicit_bindery_settings_win_over_translated_ones(tmp_path: Path) -> None:
    values = merge(guide("dockerhub-secret.yaml", "dockerhub-config.yaml"),
                   {"config": {"image_prefix": "binderbot/other-", "launcher": "docker"}})
    config = bindery_config(render(values), tmp_path)
    assert config["image_prefix"] == "binderbot/other-" and config["launcher"] == "docker"


def test_singleuser_default_url_is_the_page_a_launch_opens(tmp_path: Path) -> None:
    assert bindery_config(render(), tmp_path)["default_url"] == "/lab"
    config = bindery_config(render({"jupyterhub": {"singleuser": {"defaultUrl": "/tree"}}}), tmp_path)
    assert config["default_url"] == "/tree"
    explicit = {"jupyterhub": {"singleuser": {"defaultUrl": "/tree"}}, "config": {"default_url": "/"}}
    assert bindery_config(render(explicit), tmp_path)["default_url"] == "/"


SECRET_VALUES: dict[str, Any] = {
    "github_token": "ghp_chart_token_1", "github_client_secret": "gh-client-secret-2",
    "gitlab_token": "glpat-chart-token-3", "registry_password": "registry-password-4",
    "hub_api_token": "hub-api-token-5", "flower_basic_auth": "admin:flower-password-6",
    "git_credentials": {"https://git.example.org/team/": {"username": "bot", "password": "git-password-7"}},
    "git_ssh_key": "/etc/bindery/ssh/id-ed25519-8", "build_token_secret": "build-token-secret-9-xxxxxxxx",
    "hub_oauth_client_secret": "hub-oauth-client-secret-10", "session_secret": "session-secret-11-" + "x" * 20,
    "webhook_secret": "webhook-secret-12-xxxxxxxx",
    "webhook_repositories": {"https://github.com/org/repo": "webhook-repo-secret-13-xxxxx"},
    "prebuild_tokens": {"ci": "prebuild-token-14-" + "x" * 20},
    "proxy_auth_token": "proxy-auth-token-15-xxxxxxxx",
}


def _secret_texts(value: Any) -> list[str]:
    """The secret strings inside a setting's value (a mapping's values, git_credentials' passwords)."""
    if isinstance(value, str):
        return [value]
    return [str(entry["password"]) if isinstance(entry, dict) else str(entry) for entry in value.values()]


def test_cors_allow_origin_is_one_value_as_in_binderhub_s_chart(tmp_path: Path) -> None:
    assert bindery_config(render(), tmp_path)["cors_allow_origin"] == "", "off unless asked for"
    config = bindery_config(render({"cors": {"allowOrigin": "https://docs.example.org"}}), tmp_path)
    assert config["cors_allow_origin"] == "https://docs.example.org"
    # Zero to BinderHub's current spelling; the hub needs nothing: Bindery passes the value to each
    # server it launches (user_options -> contrib/jupyterhub/bindery_spawner.py)
    guide_layout = {"config": {"BinderHub": {"cors_allow_origin": "*"}}}
    assert bindery_config(render(guide_layout), tmp_path)["cors_allow_origin"] == "*"
    explicit = {"cors": {"allowOrigin": "*"}, "config": {"cors_allow_origin": "https://a.example"}}
    assert bindery_config(render(explicit), tmp_path)["cors_allow_origin"] == "https://a.example"


def test_every_secret_setting_goes_to_the_secret_never_the_configmap(tmp_path: Path) -> None:
    from app.config import ConfigSchema

    marked = {name for name, field in ConfigSchema().fields.items() if field.metadata.get("secret")}
    assert marked == set(SECRET_VALUES), "the chart's bindery.secretNames must list every secret setting"
    docs = render({"config": {**SECRET_VALUES, "registry_username": "bot",
                              "git_ssh_known_hosts": "/etc/bindery/ssh/known_hosts"}})
    configmap = json.dumps(find(docs, "ConfigMap", "bindery"))
    for name, value in SECRET_VALUES.items():
        for text in _secret_texts(value):
            assert text not in configmap, f"{name} is in the ConfigMap"
    config = bindery_config(docs, tmp_path)
    assert {name: config[name] for name in SECRET_VALUES} == SECRET_VALUES  # mappings travel as JSON


def test_behind_the_charts_ingress_one_proxy_hop_is_trusted(tmp_path: Path) -> None:
    ingress = {"ingress": {"enabled": True, "host": "binder.example.org"}}
    assert bindery_config(render(ingress), tmp_path)["trusted_proxy_hops"] == 1
    assert bindery_config(render(), tmp_path)["trusted_proxy_hops"] == 0  # no proxy: X-Forwarded-For is a lie
    explicit = merge(ingress, {"config": {"trusted_proxy_hops": 2}})  # e.g. a load balancer in front too
    assert bindery_config(render(explicit), tmp_path)["trusted_proxy_hops"] == 2


# --- the hub's two addresses and NOTES ---------------------------------------------------------

def test_the_bundled_hub_is_called_in_cluster_and_browsers_go_to_its_public_address(tmp_path: Path) -> None:
    values = {"jupyterhub": {"enabled": True}, "config": {"BinderHub": {"hub_url": "https://hub.example.org"}}}
    config = bindery_config(render(values), tmp_path)
    assert config["launcher"] == "jupyterhub"
    assert config["hub_url"] == "https://hub.example.org/", "ready events send browsers here"
    assert config["hub_api_url"] == "http://proxy-public/hub/api", "Bindery's own calls stay in the cluster"
    explicit = merge(values, {"config": {"hub_api_url": "http://hub:8081/hub/api"}})
    assert bindery_config(render(explicit), tmp_path)["hub_api_url"] == "http://hub:8081/hub/api"
    external = {"config": {"hub_url": "https://hub.example.org/"}}  # a hub of its own: one address for both
    config = bindery_config(render(external), tmp_path)
    assert config["hub_url"] == "https://hub.example.org/" and config["hub_api_url"] is None
    assert "Browsers are sent to the hub at https://hub.example.org/" in notes(values)


@pytest.mark.parametrize("values", [
    {"jupyterhub": {"enabled": True}},
    {"config": {"launcher": "jupyterhub"}},
    {"auth": {"enabled": True, "redirectUrl": "https://b.example.org/oauth_callback"}},
])
def test_launches_through_the_hub_without_a_public_hub_address_are_refused_saying_what_to_set(
        values: dict[str, Any]) -> None:
    with pytest.raises(Exception, match=r"set config\.BinderHub\.hub_url to the hub's public address"):
        render(values)


@pytest.mark.parametrize(("tls", "scheme"), [("", "http"), ("binder-tls", "https")])
def test_notes_print_the_scheme_the_ingress_serves(tls: str, scheme: str) -> None:
    text = notes({"ingress": {"enabled": True, "host": "binder.example.org", "tlsSecretName": tls}})
    assert f"Its address: {scheme}://binder.example.org/" in text
    assert ("set ingress.tlsSecretName" in text) is (not tls)
    assert "port-forward svc/bindery 8585:80" in notes()


def test_notes_and_values_say_which_image_runs() -> None:
    assert "image bindery:0.1.0" in notes() and "make image" in notes(), "the default image is published nowhere"
    pushed = notes({"image": {"repository": "registry.example.org/bindery", "tag": "abc123"}})
    assert "image registry.example.org/bindery:abc123" in pushed and "make image" not in pushed
    values = (CHART / "values.yaml").read_text()
    assert "make image REGISTRY=" in values


# --- authentication (auth.enabled) -------------------------------------------------------------

AUTH = {"auth": {"enabled": True}, "ingress": {"enabled": True, "host": "binder.example.org",
                                                 "tlsSecretName": "binder-tls"},
        "config": {"BinderHub": {"hub_url": "https://hub.example.org/"}},
        "jupyterhub": {"hub": {"services": {"binder": {"apiToken": "hub-token-for-auth-0123"}}}}}


def hub_auth_config(docs: list[dict[str, Any]], services: list[dict[str, Any]],
                    roles: list[dict[str, Any]]) -> Any:
    """The hub's config after the chart's jupyterhub_config.d file ran on top of ``services`` and ``roles``
    (what zero-to-jupyterhub's config set from hub.services and hub.loadRoles)."""
    from traitlets.config import Config

    c = Config()
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
    code = find(docs, "ConfigMap", "bindery-hub-auth")["data"]["bindery-auth.py"]
    exec(compile(code, "bindery-auth.py", "exec"), {"c": c})
    return c.JupyterHub


def test_one_switch_makes_bindery_a_hub_oauth_client(tmp_path: Path) -> None:
    docs = render(AUTH)
    config = bindery_config(docs, tmp_path)
    assert config["auth_enabled"] and config["launcher"] == "jupyterhub"
    assert config["hub_oauth_client_id"] == "service-binder"
    assert config["hub_oauth_redirect_url"] == "https://binder.example.org/oauth_callback"
    assert len(config["session_secret"]) == 48  # made at install, in the Secret only
    assert config["session_secret"] not in json.dumps(find(docs, "ConfigMap", "bindery"))
    assert "BINDERY_SESSION_SECRET" in secret_env(docs)

    hub = hub_auth_config(docs, [{"name": "binder", "api_token": "hub-token-for-auth-0123"}],
                          [{"name": "user", "scopes": ["self", "read:users:name"]}])
    assert hub.allow_named_servers is True
    assert hub.services == [{"name": "binder", "api_token": "hub-token-for-auth-0123",
                             "oauth_client_id": "service-binder", "oauth_no_confirm": True,
                             "oauth_redirect_uri": "https://binder.example.org/oauth_callback"}]
    roles = {role["name"]: role for role in hub.load_roles}
    assert roles["user"]["scopes"] == ["access:services!service=binder", "read:users:name", "self"]
    assert roles["bindery-service"] == {"name": "bindery-service", "services": ["binder"],
                                        "scopes": ["admin:users", "admin:servers", "access:servers", "tokens"]}
    # the API token never reaches the hub's file: it stays in the hub's own config
    assert "hub-token-for-auth-0123" not in json.dumps(find(docs, "ConfigMap", "bindery-hub-auth"))
    # the bundled hub loads the file; without auth.enabled there is no file, so nothing changes
    values = helm.Chart.load(CHART).merge_values({})
    mount = values["jupyterhub"]["hub"]["extraVolumeMounts"][0]
    assert mount["mountPath"] == "/usr/local/etc/jupyterhub/jupyterhub_config.d"
    assert values["jupyterhub"]["hub"]["extraVolumes"][0]["configMap"] == {"name": "bindery-hub-auth",
                                                                          "optional": True}
    assert not [d for d in render() if d["metadata"]["name"] == "bindery-hub-auth"]
    assert not bindery_config(render(), tmp_path)["auth_enabled"]


def test_auth_settings_and_a_hub_without_the_service(tmp_path: Path) -> None:
    values = merge(AUTH, {"auth": {"serviceName": "bindery", "redirectUrl": "https://b.example.org/oauth_callback",
                                   "sessionSecret": "k" * 40, "maxServersPerUser": 3}})
    docs = render(values)
    config = bindery_config(docs, tmp_path)
    assert (config["hub_oauth_client_id"], config["hub_oauth_redirect_url"], config["session_secret"],
            config["max_servers_per_user"]) == ("service-bindery", "https://b.example.org/oauth_callback",
                                                "k" * 40, 3)
    hub = hub_auth_config(docs, [], [])
    assert [s["name"] for s in hub.services] == ["bindery"] and hub.services[0]["oauth_client_id"] == "service-bindery"
    assert {role["name"] for role in hub.load_roles} == {"user", "bindery-service"}


def test_auth_without_a_redirect_url_is_refused_with_a_message() -> None:
    with pytest.raises(Exception, match="auth.enabled needs auth.redirectUrl"):
        render({"auth": {"enabled": True}, "config": {"BinderHub": {"hub_url": "https://hub.example.org/"}}})


# --- lint and schema ---------------------------------------------------------------------------

def test_lint_is_clean() -> None:
    for values in ({}, guide("gcr-secret.yaml", "gcr-config.yaml"), {"builder": {"engine": "podman"}}, AUTH):
        report = helm.lint(CHART, values, strict=False)
        assert report["errors"] == []
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        # The only warning: the optional zero-to-jupyterhub dependency is not vendored (offline).
        assert [m["error"] for m in problems] == ["chart directory is missing these dependencies: jupyterhub"]


@pytest.mark.parametrize("values", [
    {"builder": {"engine": "kaniko"}},
    {"web": {"replicas": -1}},
    {"redis": {"enabled": False}},
    {"redis": {"enabled": False, "externalUrl": "http://not-redis"}},
    {"ingress": {"enabled": True}},
    {"flower": {"basicAuth": "no-colon"}},
    {"registry": {"password": 42}},
    {"unknownTopLevel": True},
    {"auth": {"enabled": True, "redirectUrl": "https://b.example.org/elsewhere"}},
    {"auth": {"enabled": True, "sessionSecret": "too-short"}},
    {"cors": {"allowOrigin": "https://docs.example.org/path"}},
    {"cors": {"allowedOrigin": "*"}},
    {"redis": {"password": "too-short"}},
    {"networkPolicy": {"enabled": "yes"}},
    {"networkPolicy": {"build": {"egressAllowRules": {"privateIps": True}}}},
    {"networkPolicy": {"web": {"ingressFrom": "ingress-nginx"}}},
    {"redis": {"password": "has a space and is long enough"}},
])
def test_values_that_violate_the_schema_are_refused(values: dict[str, Any]) -> None:
    chart = helm.Chart.load(CHART)
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(values))


def test_the_guides_files_and_defaults_satisfy_the_schema() -> None:
    chart = helm.Chart.load(CHART)
    for values in ({}, guide("dockerhub-secret.yaml", "dockerhub-config.yaml"),
                   guide("gcr-secret.yaml", "gcr-config.yaml"), guide("custom-registry.yaml")):
        chart.validate_schema(chart.merge_values(values))


@pytest.mark.parametrize("task_events", [False, True])
def test_flower_keeps_task_events_off_unless_the_config_turns_them_on(task_events: bool) -> None:
    values = {"config": {"task_events": True}} if task_events else None
    flower = next(d for name, d in deployments(render(values)).items() if name.endswith("-flower"))
    command = flower["spec"]["template"]["spec"]["containers"][0]["command"]
    assert ("--enable_events=False" in command) is not task_events, command
    launch = next(d for name, d in deployments(render(values)).items() if name.endswith("-worker-launch"))
    assert launch["spec"]["replicas"] == 2, "a launch worker per core: two single-core pods by default"
