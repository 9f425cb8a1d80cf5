"""Build backend ``kubernetes``: one build pod per image, as BinderHub runs them.

The pod runs the repo2docker image with the docker builder's own arguments
against the node's engine socket (host Docker, a dind or a Podman DaemonSet)
and pushes the image itself with the mounted push credentials.  Repository
credentials (the provider's clone environment) never sit in the pod spec, where
anyone allowed to read pods would see them: each build pod gets a Secret of its
own, named after it plus a random suffix, that its environment refers to and
that the pod owns (so Kubernetes deletes it with the pod).  Its name comes
from the build slug and ref, so a second worker that creates the same pod gets
409 and follows the running build instead of starting another.  The
``CoreV1Api`` is handed in; :func:`core_api` makes one lazily per process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from app.errors import BuildError
from providers.base import RepoProvider, safe_build_slug
from providers.git_env import SECRET_VARIABLES
from tasks.backends import environment, thin_build
from tasks.backends.docker_builder import _event, repo2docker_command, repo2docker_config

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]

COMPONENT = "bindery-build"
LABELS = {"app.kubernetes.io/name": "bindery", "app.kubernetes.io/component": COMPONENT}
SELECTOR = ",".join(f"{key}={value}" for key, value in LABELS.items())
CONFIG_MAP = "bindery-repo2docker-config"
CONFIG_DIR = "/etc/bindery-repo2docker"
SOCKET = "/var/run/docker.sock"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
#: Seconds an unowned build Secret may live (it gets its owner a moment after it is created).
ORPHAN_SECRET_AGE = 600


def build_pod_name(build_slug: str, ref: str, prefix: str = "build-", limit: int = 63,
                   ref_length: int = 6) -> str:
    """BinderHub's ``_generate_build_name``: ``build-<escaped slug>-<hash>-<ref[:6]>``, a DNS label."""
    short_ref = re.sub(r"[^a-z0-9]", "-", ref.lower())[:ref_length].strip("-") or "ref"
    slug = safe_build_slug(build_slug, limit=limit - len(prefix) - len(short_ref) - 1)
    name = re.sub(r"[^a-z0-9-]", "-", f"{prefix}{slug}-{short_ref}")
    name = re.sub(r"-{2,}", "-", name).strip("-")[:limit].rstrip("-")
    if not _DNS_LABEL.match(name):  # cannot happen with the substitutions above; checked anyway
        raise BuildError(f"cannot make a pod name from {build_slug!r}")
    return name


def rendezvous_node(key: str, nodes: list[str]) -> str | None:
    """The node ``key`` hashes to (highest random weight), stable when other nodes come and go."""
    if not nodes:
        return None
    return max(sorted(nodes), key=lambda node: hashlib.sha256(f"{node}\0{key}".encode()).hexdigest())


def namespace(config: dict[str, Any]) -> str:
    if config.get("kubernetes_namespace"):
        return str(config["kubernetes_namespace"])
    try:
        with open(_NAMESPACE_FILE, encoding="utf-8") as fh:
            return fh.read().strip() or "default"
    except OSError:
        return "default"


def core_api(config: dict[str, Any]) -> Any:
    """A CoreV1Api from the in-cluster service account, else the kubeconfig (made on first use)."""
    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        kube_config.load_kube_config(config_file=config.get("kubernetes_kubeconfig"))
    return client.CoreV1Api()


def config_map_manifest(config: dict[str, Any]) -> dict[str, Any]:
    """repo2docker's config and thin_build.py, which a content-only commit's pod runs instead."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CONFIG_MAP, "labels": dict(LABELS)},
            "data": {"repo2docker_config.py": repo2docker_config(config),
                     "thin_build.py": Path(thin_build.__file__).read_text(encoding="utf-8")}}


def _affinity(config: dict[str, Any], node: str | None) -> dict[str, Any] | None:
    affinity: dict[str, Any] = json.loads(json.dumps(config["build_pod_affinity"] or {}))
    if node:
        node_affinity = affinity.setdefault("nodeAffinity", {})
        node_affinity.setdefault("preferredDuringSchedulingIgnoredDuringExecution", []).append({
            "weight": 100,
            "preference": {"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]},
        })
    return affinity or None


def secret_manifest(name: str, env: dict[str, str]) -> dict[str, Any]:
    """The Secret holding one build's clone environment (owned by its pod once that exists)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "labels": dict(LABELS)}, "stringData": dict(env)}


def pod_manifest(config: dict[str, Any], repo: RepoProvider, launch: dict[str, Any],
                 node: str | None = None, secret: str | None = None,
                 clone_env: dict[str, str] | None = None, thin_plan: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The build pod, as a plain manifest (what the API gets, and what tests validate).

    With ``secret`` the credentials in the provider's clone environment are read
    from that Secret (see :func:`secret_manifest`); the rest is inline.
    ``clone_env`` is ``repo.repo2docker_env()`` when the caller has it already
    (making it checks the repository's addresses again).
    """
    if clone_env is None:
        clone_env = repo.repo2docker_env()
    name = build_pod_name(repo.build_slug(), launch["resolved_ref"])
    args = repo2docker_command({**config, "repo2docker_command": config["build_pod_command"]}, repo, launch,
                               f"{CONFIG_DIR}/repo2docker_config.py")
    if config.get("registry_url"):  # the pod pushes; the push step then finds the image stored
        args.insert(args.index("--"), "--push")
    if thin_plan is not None:  # a content-only commit: the thin image (tasks/backends/thin_build.py)
        args = ["python3", f"{CONFIG_DIR}/thin_build.py",
                json.dumps({**thin_plan, "push": bool(config.get("registry_url"))})]
    env: list[dict[str, Any]] = [{"name": "DOCKER_HOST", "value": f"unix://{SOCKET}"}]
    for key, value in sorted({"GIT_TERMINAL_PROMPT": "0", **clone_env}.items()):
        env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
                   if secret and key in SECRET_VARIABLES else {"name": key, "value": value})
    mounts = [{"name": "engine-socket", "mountPath": SOCKET},
              {"name": "repo2docker-config", "mountPath": CONFIG_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [
        {"name": "engine-socket", "hostPath": {"path": config["build_pod_engine_socket"], "type": "Socket"}},
        {"name": "repo2docker-config", "configMap": {"name": CONFIG_MAP}},
    ]
    if config.get("build_pod_push_secret"):
        env.append({"name": "DOCKER_CONFIG", "value": "/root/.docker"})
        mounts.append({"name": "push-secret", "mountPath": "/root/.docker", "readOnly": True})
        volumes.append({"name": "push-secret", "secret": {"secretName": config["build_pod_push_secret"]}})
    resources = {key: dict(value) for key, value in (("requests", config["build_pod_requests"]),
                                                      ("limits", config["build_pod_limits"])) if value}
    container: dict[str, Any] = {
        "name": "builder", "image": config["build_pod_image"], "args": args, "env": env,
        "volumeMounts": mounts, "imagePullPolicy": "IfNotPresent",
    }
    if resources:
        container["resources"] = resources
    spec: dict[str, Any] = {
        "restartPolicy": "Never", "containers": [container], "volumes": volumes,
        "activeDeadlineSeconds": int(config["build_timeout"]),
        "automountServiceAccountToken": False,
    }
    if config["build_pod_node_selector"]:
        spec["nodeSelector"] = dict(config["build_pod_node_selector"])
    if config["build_pod_tolerations"]:
        spec["tolerations"] = list(config["build_pod_tolerations"])
    affinity = _affinity(config, node)
    if affinity:
        spec["affinity"] = affinity
    if config.get("build_pod_service_account"):
        spec["serviceAccountName"] = config["build_pod_service_account"]
    image_hash = hashlib.sha256(launch["image"].encode()).hexdigest()[:16]
    # (the image and repository are in the args; no annotations: Podman's kube play, which runs
    # these manifests in tests, refuses annotation values over 63 characters)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {**LABELS, "bindery.org/image": image_hash}},
            "spec": spec}


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Whole lines from a byte stream whose chunks split lines anywhere."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", errors="replace")
    if buffer:
        yield buffer.decode("utf-8", errors="replace")


class KubernetesBuilder:
    def __init__(self, api: Any, config: dict[str, Any]) -> None:
        self.api = api
        self.config = config
        self.namespace = namespace(config)

    # --- placement -----------------------------------------------------------------------
    def _sticky_node(self, repo_url: str) -> str | None:
        if not self.config["build_pod_sticky"]:
            return None
        nodes = list(self.config["build_pod_nodes"])
        if not nodes:
            listed = self.api.list_node(label_selector=self.config["build_pod_node_label"])
            nodes = [item.metadata.name for item in listed.items]
        return rendezvous_node(repo_url, nodes)

    # --- build ---------------------------------------------------------------------------
    def build(self, repo: RepoProvider, launch: dict[str, Any], emit: Emit) -> None:
        """A thin-image pod when only content changed (tasks/backends/environment.py), else repo2docker's."""
        from app.extensions import redis_client

        plan, decision = None, None
        if launch.get("provider"):
            plan, decision = environment.pod_plan(self.config, redis_client.client, self._image_exists,
                                                  repo.repo_url(), repo.repo2docker_env(), launch, emit)
        if plan is not None:
            try:
                self._build_pod(repo, launch, emit, plan)
                return
            except BuildError as exc:
                emit({"phase": "building", "message": f"Full build: the thin image failed ({exc}).\n"})
        self._build_pod(repo, launch, emit)
        if decision is not None and decision.reusable:
            environment.remember(redis_client.client, launch["repo_url"], decision.env_hash, launch["image"],
                                 launch["resolved_ref"])

    def _image_exists(self, image: str) -> bool:
        """Whether the earlier image is still in the registry (build pods have no engine of ours to ask)."""
        from app.extensions import engine
        from tasks.backends.registry import make_image_store

        return bool(make_image_store(self.config, lambda: engine.client).exists(image))

    def _build_pod(self, repo: RepoProvider, launch: dict[str, Any], emit: Emit,
                   thin_plan: dict[str, Any] | None = None) -> None:
        """Create (or attach to) the build pod, stream its log, and wait for it to finish."""
        clone_env = repo.repo2docker_env()
        if "GIT_SSH_COMMAND" in clone_env:
            # the key and known_hosts are files on the worker, which build pods do not have
            raise BuildError("This Bindery builds in Kubernetes build pods, which cannot clone over ssh "
                             "yet: use an https URL for this repository, or ask the operator to build "
                             "ssh repositories with the docker builder.", 400)
        node = self._sticky_node(repo.repo_url())
        clone_secrets = {key: value for key, value in clone_env.items() if key in SECRET_VARIABLES}
        name = build_pod_name(repo.build_slug(), launch["resolved_ref"])
        secret = f"{name}-{secrets.token_hex(4)}" if clone_secrets else None
        manifest = pod_manifest(self.config, repo, launch, node, secret, clone_env, thin_plan)
        deadline = time.monotonic() + self.config["build_timeout"]
        try:
            self._ensure_config_map()
            if secret:
                self.api.create_namespaced_secret(self.namespace, secret_manifest(secret, clone_secrets))
            try:
                self._create_or_attach(manifest, launch, emit, secret)
            except ApiException:
                if secret:  # no pod of ours will own it
                    self._delete_secret(secret)
                raise
            tail = self._follow(name, deadline, emit)
            phase, reason = self._wait_done(name, deadline)
            self._delete(name)  # done, failed or timed out: the log is in the events already
        except ApiException as exc:
            raise BuildError(f"The Kubernetes API refused the build: {exc.status} {exc.reason}") from exc
        if phase == "Succeeded":
            return
        if phase is None:
            reason = f"timed out after {self.config['build_timeout']} s"
        raise BuildError(f"Build failed ({reason}). Last lines of the log:\n" + "".join(tail))

    def _create_or_attach(self, manifest: dict[str, Any], launch: dict[str, Any], emit: Emit,
                          secret: str | None = None) -> None:
        """Create the pod; 409 means another worker runs this build, so follow that one.

        A failed pod left by a crashed worker is replaced instead of attached to.
        The pod created here becomes the owner of ``secret``; when another
        worker's pod runs the build, ``secret`` is not needed and is deleted.
        """
        name = manifest["metadata"]["name"]
        for _ in range(2):
            try:
                created = self.api.create_namespaced_pod(self.namespace, manifest)
                log.info("build %s: created pod %s/%s", launch["image"], self.namespace, name)
                if secret:
                    self._own_secret(secret, name, created.metadata.uid)
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise
            existing = self.api.read_namespaced_pod(name, self.namespace)
            if existing.status.phase != "Failed":
                if secret:
                    self._delete_secret(secret)
                emit({"phase": "building", "message": f"Build pod {name} is already running; following it.\n"})
                return
            self._delete(name)
            self._wait_gone(name)
        raise BuildError(f"The build pod {name} could not be replaced; please retry.", 503)

    def _wait_gone(self, name: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.api.read_namespaced_pod(name, self.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return
                raise
            time.sleep(0.5)

    def _ensure_config_map(self) -> None:
        body = config_map_manifest(self.config)
        try:
            self.api.create_namespaced_config_map(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.api.replace_namespaced_config_map(CONFIG_MAP, self.namespace, body)

    def _watch(self, name: str, deadline: float) -> Iterator[Any]:
        """The pod's states from the API's watch, until the deadline."""
        while time.monotonic() < deadline:
            remaining = max(1, int(deadline - time.monotonic()))
            stream = watch.Watch().stream(self.api.list_namespaced_pod, self.namespace,
                                          field_selector=f"metadata.name={name}",
                                          timeout_seconds=min(remaining, 300))
            for event in stream:
                if event["type"] == "DELETED":
                    yield None
                    return
                yield event["object"]

    def _follow(self, name: str, deadline: float, emit: Emit) -> deque[str]:
        """Wait for the pod to start, then turn its log lines into events."""
        tail: deque[str] = deque(maxlen=self.config["build_log_tail"])
        announced = False
        for pod in self._watch(name, deadline):
            if pod is None:
                raise BuildError(f"The build pod {name} was deleted before it finished.")
            if pod.status.phase != "Pending":
                break
            if not announced:
                emit({"phase": "waiting", "message": f"Waiting for build pod {name} to start...\n"})
                announced = True
        else:
            return tail
        response = self.api.read_namespaced_pod_log(name, self.namespace, follow=True,
                                                    _preload_content=False,
                                                    _request_timeout=max(1, deadline - time.monotonic()))
        phase = "fetching"
        try:
            for line in _lines(response.stream(4096, decode_content=True)):
                if not line.strip():
                    continue
                event = _event(line, phase)
                phase = event["phase"]
                tail.append(event["message"])
                emit(event)
        finally:
            response.release_conn()
        return tail

    def _wait_done(self, name: str, deadline: float) -> tuple[str | None, str]:
        """(phase, reason) once the pod has finished; (None, "") at the deadline."""
        for pod in self._watch(name, deadline):
            if pod is None:
                return "Failed", "the build pod was deleted"
            if pod.status.phase in ("Succeeded", "Failed"):
                reason = pod.status.reason or ""
                for status in pod.status.container_statuses or []:
                    terminated = status.state and status.state.terminated
                    if terminated:
                        reason = reason or f"repo2docker exited with {terminated.exit_code}"
                return pod.status.phase, reason or "the build pod failed"
        return None, ""

    def _delete(self, name: str) -> None:
        try:
            self.api.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _own_secret(self, secret: str, pod: str, uid: str) -> None:
        """Make the pod the Secret's owner: Kubernetes' garbage collector deletes it with the pod."""
        owner = {"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": uid, "blockOwnerDeletion": False}
        self.api.patch_namespaced_secret(secret, self.namespace, {"metadata": {"ownerReferences": [owner]}})

    def _delete_secret(self, secret: str) -> None:
        try:
            self.api.delete_namespaced_secret(secret, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # --- cleanup -------------------------------------------------------------------------
    def cleanup(self, max_age: float) -> int:
        """Delete finished build pods, build pods older than ``max_age``, and orphaned build Secrets.

        A Secret without an owner belongs to a worker that died between creating
        it and creating its pod; it is left alone for ``ORPHAN_SECRET_AGE`` s.
        """
        now = time.time()
        for item in self.api.list_namespaced_secret(self.namespace, label_selector=SELECTOR).items:
            created = item.metadata.creation_timestamp
            if not item.metadata.owner_references and created is not None \
                    and now - created.timestamp() > ORPHAN_SECRET_AGE:
                self._delete_secret(item.metadata.name)
        removed = 0
        for pod in self.api.list_namespaced_pod(self.namespace, label_selector=SELECTOR).items:
            created = pod.metadata.creation_timestamp
            old = created is not None and now - created.timestamp() > max_age
            if pod.status.phase in ("Succeeded", "Failed") or old:
                try:
                    self.api.delete_namespaced_pod(pod.metadata.name, self.namespace, grace_period_seconds=0)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    continue
                removed += 1
        return removed
