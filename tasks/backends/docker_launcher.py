"""Launcher ``docker``: one container per launch running a Jupyter server with its own token.

Each container gets a network of its own (tasks/backends/user_network.py: the host's services are
out of reach) and is published on ``launch_host`` at a port from ``launch_ports`` (claimed in
Redis, so concurrent launches on many workers never collide).
Labels record launch id, repository and start time: quotas are counted and
old servers removed from them.  Servers stop themselves when idle (Jupyter's
own idle shutdown); the cleanup beat task removes what is left.

The page a server opens (``default_url``) is picked twice, cheaply: inside the container
before the server starts (a shell looks up ``jupyter-lab`` / ``jupyter-notebook`` on the
image's PATH, so the server's own root redirects to an interface the image has), and
after it answers (one request, tasks/backends/default_url.py) for the loading page.

With a proxy (``proxy_api_url``, tasks/backends/proxy_routes.py) a server is started under
``base_url=/user/<launch id>/``, its route is added before ``ready``, and the URL handed out is
``<public_url>/user/<launch id>/``: browsers reach it on Bindery's own origin, never its port.
"""

from __future__ import annotations

import hashlib
import logging
import random
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import docker
import requests
from flask import current_app

from app import keys
from app.config import public_url
from app.errors import LaunchError, QuotaExceeded
from app.extensions import engine_unreachable, engine_url
from tasks.backends import proxy_routes, user_network, warm_pool
from tasks.backends.default_url import candidates, default_url_event, find_default_url
from tasks.launch_record import ended
from tasks.lock import StartLine, start_concurrency, starting_message

log = logging.getLogger(__name__)

LABEL = "org.bindery.launch"
INSTANCE = "org.bindery.instance"
Emit = Callable[[dict[str, Any]], None]

# Run in the container in front of launch_command: the server's --ServerApp.default_url is the
# first of $BINDERY_DEFAULT_URLS the image can serve (JupyterLab and the notebook UI are looked
# up as commands on its PATH; any other page is taken as it is), else the root.  `command -v` is
# a shell builtin: no Python start, no second container, no engine call.  The pages arrive in the
# environment and the command as arguments ("$@"), so nothing is ever spliced into the script;
# `set -f` keeps a * in a page from being expanded.
PICK_DEFAULT_URL = """set -f
url=/
for page in $BINDERY_DEFAULT_URLS; do
  case $page in
    /lab|/lab/*) command -v jupyter-lab >/dev/null 2>&1 || continue ;;
    /tree|/tree/*) command -v jupyter-notebook >/dev/null 2>&1 \\
        || command -v jupyter-nbclassic >/dev/null 2>&1 || continue ;;
  esac
  url=$page
  break
done
exec "$@" "--ServerApp.default_url=$url"
"""


def allow_origin_args(origin: str) -> list[str]:
    """The server's options for cors_allow_origin, as BinderHub's spawner passes them: the origin,
    and for * also the pattern form (``allow_origin`` alone leaves single files closed)."""
    if not origin:
        return []
    return [f"--ServerApp.allow_origin={origin}", *(["--ServerApp.allow_origin_pat=.*"] if origin == "*" else [])]


def repo_label(repo_url: str) -> str:
    return hashlib.sha256(repo_url.encode()).hexdigest()[:24]


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class DockerLauncher:
    def __init__(self, client: docker.DockerClient, config: dict[str, Any]) -> None:
        self.client = client
        self.config = config
        self.proxy = proxy_routes.from_config(config)

    @property
    def redis(self) -> Any:
        return current_app.extensions["bindery.redis"]

    # --- health and quota ----------------------------------------------------------------
    def ping(self) -> None:
        """Raises when the engine does not answer."""
        self.client.ping()

    def running(self) -> int:
        return self._running()

    @property
    def _mine(self) -> str:
        """Only this Bindery's servers count and are cleaned (several may share one engine)."""
        return f"{INSTANCE}={self.config['instance_name']}"

    def _running(self, repo_url: str | None = None) -> int:
        labels = [LABEL, self._mine] + ([f"org.bindery.repo={repo_label(repo_url)}"] if repo_url else [])
        return len(self.client.api.containers(filters={"label": labels, "status": "running"}))

    def check_quota(self, repo_url: str, quota: int | None = None) -> None:
        """``quota``: the launch's own per-repository quota (spec policy), else quota_per_repo."""
        total = self.config["quota_total"]
        per_repo = self.config["quota_per_repo"] if quota is None else quota
        if total and self._running() >= total and not warm_pool.evict_one(self):  # pooled servers go first
            raise QuotaExceeded(f"This Bindery is full ({total} servers running); please try again later.")
        if per_repo and self._running(repo_url) - warm_pool.idle_count(self.redis, repo_label(repo_url)) >= per_repo:
            raise QuotaExceeded(f"Too many servers of {repo_url} are running ({per_repo}); "
                                "please try again later.")

    # --- ports ---------------------------------------------------------------------------
    def _claim_port(self, launch_id: str) -> int:
        low, high = self.config["launch_ports"]
        ttl = self.config["launch_max_age"] + 120
        candidates = list(range(low, high + 1))
        random.shuffle(candidates)
        for port in candidates[:200]:
            if self.redis.set(keys.PORT(port), launch_id, nx=True, ex=ttl):
                if _port_free(self.config["launch_host"], port):
                    return port
                self.redis.delete(keys.PORT(port))
        raise QuotaExceeded(f"No free port in {low}-{high} for a new server; please try again later.")

    # --- the proxy's routes ----------------------------------------------------------------
    def base_url(self, route_id: str) -> str:
        """The server's path prefix: ``/user/<id>/`` behind the proxy, else its root."""
        return proxy_routes.base_url(route_id) if self.proxy else "/"

    def route(self, route_id: str | None, port: int) -> str:
        """The URL handed out for a server: routed through the proxy (added now), or its own port."""
        if self.proxy and route_id:
            proxy_routes.add(self.redis, self.proxy, route_id, f"http://{self.config['launch_host']}:{port}")
            return f"{public_url(self.config)}{proxy_routes.base_url(route_id)}"
        return str(self.config["launch_public_url"].format(host=self.config["launch_host"], port=port))

    def unroute(self, labels: dict[str, str]) -> None:
        """The server with these labels goes: so does its route (a no-op without a proxy)."""
        if self.proxy and labels.get(LABEL):
            proxy_routes.remove(self.redis, self.proxy, labels[LABEL])

    def _command(self, port: int, route_id: str = "") -> list[str]:
        """launch_command with the server's options; behind PICK_DEFAULT_URL unless the root is wanted."""
        idle = self.config["launch_idle_timeout"]
        address, inside_port = user_network.server_listen(self.config, port)
        command = [*self.config["launch_command"], f"--ServerApp.ip={address}",
                   f"--ServerApp.port={inside_port}", "--ServerApp.port_retries=0",
                   "--ServerApp.open_browser=False"]
        if self.proxy and route_id:
            command.append(f"--ServerApp.base_url={self.base_url(route_id)}")
        command += allow_origin_args(self.config["cors_allow_origin"])
        if idle:
            command += [f"--ServerApp.shutdown_no_activity_timeout={idle}",
                        f"--MappingKernelManager.cull_idle_timeout={idle}",
                        "--MappingKernelManager.cull_interval=60"]
        if not candidates(self.config["default_url"]):
            return [*command, "--ServerApp.default_url=/"]
        return ["/bin/sh", "-c", PICK_DEFAULT_URL, "bindery-start", *command]

    def _environment(self, token: str) -> dict[str, str]:
        environment = {"JUPYTER_TOKEN": token}
        pages = candidates(self.config["default_url"])
        if pages:
            environment["BINDERY_DEFAULT_URLS"] = " ".join(pages)
        return environment

    # --- launch --------------------------------------------------------------------------
    def launch(self, launch: dict[str, Any], emit: Emit) -> tuple[str, str]:
        """Start the server and return (url, token) once it answers."""
        try:
            return self._launch(launch, emit)
        except (requests.ConnectionError, requests.Timeout) as exc:  # the engine itself is away
                raise engine_unreachable(engine_url(self.config), exc) from exc

    def _launch(self, launch: dict[str, Any], emit: Emit) -> tuple[str, str]:
        for stale in self._containers(f"{LABEL}={launch['id']}"):  # a re-run after a crash
            stale.remove(force=True)
        self.check_quota(launch["repo_url"], launch.get("quota"))
        if warm_pool.enabled(self.config) and (pooled := warm_pool.claim(self, launch, emit)):
            return pooled  # a pool hit starts nothing: it never waits in the line
        try:
            with self._turn(launch, emit):
                container, port, token = self._start(launch)
                inside = f"http://{self.config['launch_host']}:{port}{self.base_url(launch['id'])}"
                session = requests.Session()
                self._wait_ready(container, session, inside, token, emit)
        finally:
            warm_pool.started_after_miss(self, launch)  # refills waited for this server
        found = find_default_url(session, inside, token, self.config["default_url"], image=launch["image"])
        event = default_url_event(self.config["default_url"], found)
        if event:
            emit(event)
        return self.route(launch["id"], port), token  # routed before the step sends `ready`

    @contextmanager
    def _turn(self, launch: dict[str, Any], emit: Emit) -> Iterator[None]:
        """This launch's turn to start a server: ``launch_start_concurrency`` at a time, in order of request.

        Servers started together share the cores, so all of them are late; started a few at a
        time, the first are ready at once and the last no later (bench/burst.py).
        """
        waited: list[int] = []

        def told(ahead: int) -> None:
            waited.append(ahead)
            emit({"phase": "launching", "message": starting_message(ahead), "ahead": ahead})

        with StartLine(self.redis, "start").turn(
                launch["id"], launch.get("created") or time.time(), start_concurrency(self.config), told=told,
                wanted=lambda: ended(launch["id"], self.redis) is None):
            if waited:  # (the loading page stops showing the line at a launching event without `ahead`)
                emit({"phase": "launching", "message": "Your turn: starting your server...\n"})
            yield

    def _start(self, launch: dict[str, Any]) -> tuple[Any, int, str]:
        """Run the launch's container: (container, port, token); it does not answer yet."""
        port = self._claim_port(launch["id"])
        token = secrets.token_hex(24)
        try:
            container = user_network.run_server(
                self.client, self.config, port, launch["image"], self._command(port, launch["id"]),
                environment=self._environment(token), name=f"bindery-{launch['id']}",
                labels={LABEL: launch["id"], INSTANCE: self.config["instance_name"],
                        "org.bindery.repo": repo_label(launch["repo_url"]),
                        "org.bindery.ref": launch["resolved_ref"], "org.bindery.port": str(port),
                        "org.bindery.created": str(int(time.time()))},
            )
        except (docker.errors.APIError, requests.RequestException, user_network.NetworkSetupError) as exc:
            self.redis.delete(keys.PORT(port))
            raise LaunchError(f"The container engine could not start the server: "
                              f"{user_network.describe(exc)}") from exc
        return container, port, token

    def _wait_ready(self, container: Any, session: requests.Session, url: str, token: str, emit: Emit) -> None:
        deadline = time.monotonic() + self.config["launch_timeout"]
        next_notice = time.monotonic() + 5
        pause = 0.05
        while time.monotonic() < deadline:
            try:
                if session.get(f"{url}api", params={"token": token}, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            container.reload()
            if container.status in ("exited", "dead"):
                logs = container.logs(tail=10).decode(errors="replace")
                container.remove(force=True)
                raise LaunchError(f"The server stopped while starting. Its last lines:\n{logs}")
            if time.monotonic() >= next_notice:
                next_notice += 5
                emit({"phase": "launching", "message": "Waiting for the server to answer...\n"})
            time.sleep(pause)
            pause = min(pause * 1.5, 0.25)  # servers usually answer within 1-2 s: look often early
        container.remove(force=True)
        raise LaunchError(f"The server did not answer within {self.config['launch_timeout']} s.")

    def pool_labels(self, pool_id: str, repo_url: str, ref: str, port: int) -> dict[str, str]:
        """Labels of a warm-pool server (tasks/backends/warm_pool.py): those of a launch's server."""
        return {LABEL: pool_id, INSTANCE: self.config["instance_name"], "org.bindery.repo": repo_label(repo_url),
                "org.bindery.ref": ref, "org.bindery.port": str(port), "org.bindery.created": str(int(time.time()))}

    # --- cleanup -------------------------------------------------------------------------
    def _containers(self, label: str = LABEL) -> list[Any]:
        # ignore_removed: another step or worker may remove a server between list and inspect.
        return self.client.containers.list(ignore_removed=True, all=True, filters={"label": [label, self._mine]})

    def stop(self, launch_id: str) -> int:
        """Remove the launch's server (cancelled or given up); returns how many were removed."""
        removed = warm_pool.stop_claimed(self, launch_id)
        # One list call (no inspect per container): the launch's own step may remove it meanwhile.
        for found in self.client.api.containers(all=True, filters={"label": [f"{LABEL}={launch_id}", self._mine]}):
            try:
                self.client.api.remove_container(found["Id"], force=True)
            except docker.errors.APIError as exc:
                if self._exists(found["Id"]):
                    raise
                log.info("server of launch %s already gone (%s)", launch_id, exc.status_code)
                continue
            port = (found.get("Labels") or {}).get("org.bindery.port")
            if port:
                self.redis.delete(keys.PORT(port))
            removed += 1
        self.unroute({LABEL: launch_id})  # (also when the server had gone by itself)
        return removed

    def _exists(self, container_id: str) -> bool:
        return bool(self.client.api.containers(all=True, filters={"id": container_id}))

    def cleanup(self, max_age: float) -> int:
        """Remove stopped servers and servers older than ``max_age``; free their ports."""
        removed = 0
        now = time.time()
        for container in self._containers():
            labels = container.labels
            old = now - warm_pool.age_start(self.redis, container.id, labels) > max_age
            if container.status in ("exited", "dead") or old:
                container.remove(force=True)
                self.unroute(labels)
                if labels.get("org.bindery.port"):
                    self.redis.delete(keys.PORT(labels['org.bindery.port']))
                removed += 1
        return removed
