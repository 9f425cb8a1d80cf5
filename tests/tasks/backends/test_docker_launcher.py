"""The docker launcher against the real engine: quotas from labels, cleanup, the server command,
the page a server opens (its image's JupyterLab, notebook UI or bare root), waiting its turn to start."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest
import requests
from flask import Flask

from app import create_app
from app.config import load_config
from app.errors import QuotaExceeded
from app.extensions import redis_client
from app.redis_server import EmbeddedRedis
from tasks.backends import proxy_routes
from tasks.backends.docker_launcher import INSTANCE, LABEL, DockerLauncher, repo_label
from tasks.lock import StartLine
from tests.chp import Chp
from tests.conftest import JUPYTER_IMAGE

pytestmark = pytest.mark.engine

# JupyterLab and Notebook 7 on top of JUPYTER_IMAGE (tests/images/jupyterlab, scripts/base-image.sh)
LAB_IMAGE = "localhost/bindery-jupyterlab:bookworm"


@pytest.fixture(scope="session")
def lab_image(engine: docker.DockerClient) -> str:
    try:
        engine.images.get(LAB_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{LAB_IMAGE} is missing: `make test` builds it (scripts/base-image.sh)")
    return LAB_IMAGE


@pytest.fixture
def app(redis_server: EmbeddedRedis, docker_host: str) -> Flask:
    return create_app({"redis_url": redis_server.url, "docker_host": docker_host,
                       "instance_name": f"test-{uuid.uuid4().hex[:12]}",
                       "launch_ports": "19600-19699", "quota_per_repo": 1, "quota_total": 0})


@pytest.fixture
def started(engine: docker.DockerClient) -> Iterator[list[Any]]:
    containers: list[Any] = []
    yield containers
    for container in containers:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


def _sleeper(engine: docker.DockerClient, app: Flask, repo_url: str, created: float,
             command: str = "sleep 300") -> Any:
    return engine.containers.run(
        JUPYTER_IMAGE, ["sh", "-c", command], detach=True, network_mode="host",
        labels={LABEL: uuid.uuid4().hex, INSTANCE: app.config["BINDERY"]["instance_name"],
                "org.bindery.repo": repo_label(repo_url),
                "org.bindery.created": str(int(created))})


def test_per_repo_quota_counts_running_servers_from_labels(
        app: Flask, engine: docker.DockerClient, started: list[Any]) -> None:
    repo_url = f"http://127.0.0.1:1/{uuid.uuid4().hex}.git"
    launcher = DockerLauncher(engine, app.config["BINDERY"])
    with app.app_context():
        launcher.check_quota(repo_url)  # nothing running yet
        started.append(_sleeper(engine, app, repo_url, time.time()))
        with pytest.raises(QuotaExceeded, match="Too many servers of .* are running"):
            launcher.check_quota(repo_url)
        launcher.check_quota(repo_url + "-other")  # another repository is not limited by it


def test_total_quota(app: Flask, engine: docker.DockerClient, started: list[Any]) -> None:
    config = {**app.config["BINDERY"], "quota_total": 1, "quota_per_repo": 0}
    launcher = DockerLauncher(engine, config)
    with app.app_context():
        if launcher._running() == 0:  # counts only this test's instance
            started.append(_sleeper(engine, app, "http://127.0.0.1:1/a.git", time.time()))
        with pytest.raises(QuotaExceeded, match="full"):
            launcher.check_quota("http://127.0.0.1:1/b.git")


def test_cleanup_removes_stopped_and_too_old_servers_only(
        app: Flask, engine: docker.DockerClient, started: list[Any]) -> None:
    repo_url = "http://127.0.0.1:1/cleanup.git"
    young = _sleeper(engine, app, repo_url, time.time())
    old = _sleeper(engine, app, repo_url, time.time() - 7200)
    stopped = _sleeper(engine, app, repo_url, time.time(), command="exit 0")
    stranger = engine.containers.run(JUPYTER_IMAGE, ["true"], detach=True, network_mode="host",
                                     labels={LABEL: uuid.uuid4().hex, INSTANCE: "someone-else"})
    started.extend([young, old, stopped, stranger])
    deadline = time.monotonic() + 30
    while stopped.status != "exited" and time.monotonic() < deadline:
        time.sleep(0.2)
        stopped.reload()
    launcher = DockerLauncher(engine, app.config["BINDERY"])
    with app.app_context():
        assert launcher.cleanup(max_age=3600) >= 2
    remaining = {c.id for c in engine.containers.list(ignore_removed=True, all=True, filters={"label": [LABEL]})}
    assert stranger.id in remaining, "another Bindery's stopped server is not ours to remove"
    assert young.id in remaining
    assert old.id not in remaining and stopped.id not in remaining


def test_stop_removes_only_that_launch_s_server_and_frees_its_port(
        app: Flask, engine: docker.DockerClient, started: list[Any]) -> None:
    launch_id = uuid.uuid4().hex
    mine = engine.containers.run(JUPYTER_IMAGE, ["sleep", "300"], detach=True, network_mode="host", labels={
        LABEL: launch_id, INSTANCE: app.config["BINDERY"]["instance_name"], "org.bindery.port": "19677"})
    other = _sleeper(engine, app, "http://127.0.0.1:1/stop.git", time.time())
    started.extend([mine, other])
    launcher = DockerLauncher(engine, app.config["BINDERY"])
    with app.app_context():
        client = app.extensions["bindery.redis"]
        client.set("bindery:port:19677", launch_id)
        assert launcher.stop(launch_id) == 1
        assert launcher.stop(launch_id) == 0, "nothing left to stop"
        assert client.get("bindery:port:19677") is None
    remaining = {c.id for c in engine.containers.list(ignore_removed=True, all=True, filters={"label": [LABEL]})}
    assert mine.id not in remaining and other.id in remaining


def test_server_command_sets_port_and_idle_shutdown(app: Flask, engine: docker.DockerClient) -> None:
    command = DockerLauncher(engine, {**app.config["BINDERY"], "launch_idle_timeout": 300})._command(19650)
    assert command[:2] == ["/bin/sh", "-c"] and command[3:6] == ["bindery-start", "jupyter", "server"]
    # its own network: it listens on every address of its namespace, published on launch_host:19650
    assert "--ServerApp.port=8888" in command and "--ServerApp.ip=0.0.0.0" in command
    assert "--ServerApp.shutdown_no_activity_timeout=300" in command
    host = DockerLauncher(engine, {**app.config["BINDERY"], "launch_network": "host"})._command(19650)
    assert "--ServerApp.port=19650" in host and "--ServerApp.ip=127.0.0.1" in host
    assert not any("token" in part.lower() for part in command), "the token travels in the environment"


def _run_command(tmp_path: Any, default_url: str, on_path: set[str]) -> list[str]:
    """Run the launcher's command with the host's /bin/sh: PATH holds only stubs of the commands
    ``on_path`` and a ``jupyter`` that prints its arguments. Returns them."""
    stubs = tmp_path / "-".join(sorted(on_path) or ["none"])
    stubs.mkdir()
    for name in {"jupyter", *on_path}:
        (stubs / name).write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
        (stubs / name).chmod(0o755)
    config = load_config({"default_url": default_url, "launch_idle_timeout": 0}, environ={})
    launcher = DockerLauncher(None, config)  # type: ignore[arg-type]  # no engine: the command only
    command = launcher._command(19650)
    env = {**launcher._environment("t0k"), "PATH": str(stubs)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=10)
    return done.stdout.splitlines()


@pytest.mark.parametrize(("default_url", "on_path", "picked"), [
    ("/lab", {"jupyter-lab", "jupyter-notebook"}, "/lab"),
    ("/lab", {"jupyter-notebook"}, "/tree"),
    ("/lab", {"jupyter-nbclassic"}, "/tree"),
    ("/lab", set(), "/"),
    ("/tree", {"jupyter-lab"}, "/lab"),
    ("/lab/tree/README.md", {"jupyter-lab"}, "/lab/tree/README.md"),
    ("/voila/render/app.ipynb", set(), "/voila/render/app.ipynb"),  # not a UI it can look up: as is
    ("/*", set(), "/*"),  # a page is never a glob
    ("/", {"jupyter-lab"}, "/"),
])
def test_the_container_picks_the_default_url_from_what_its_image_has(
        tmp_path: Any, default_url: str, on_path: set[str], picked: str) -> None:
    args = _run_command(tmp_path, default_url, on_path)
    assert args[:2] == ["server", "--ServerApp.ip=0.0.0.0"], "launch_command and its options, unchanged"
    assert "--ServerApp.port=8888" in args
    assert args[-1] == f"--ServerApp.default_url={picked}"
    assert sum(a.startswith("--ServerApp.default_url=") for a in args) == 1


def test_the_root_is_passed_as_is_without_a_shell() -> None:
    launcher = DockerLauncher(None, load_config({"default_url": "/"}, environ={}))  # type: ignore[arg-type]
    command = launcher._command(19650)
    assert command[:2] == ["jupyter", "server"] and command[-1] == "--ServerApp.default_url=/"
    assert "BINDERY_DEFAULT_URLS" not in launcher._environment("t0k")


@pytest.mark.parametrize(("image", "default_url", "found"), [
    (LAB_IMAGE, "/lab", "/lab"),
    (LAB_IMAGE, "/tree", "/tree"),
    (LAB_IMAGE, "/voila/tree", "/lab"),  # a page the image lacks: JupyterLab, and the page is told
    (JUPYTER_IMAGE, "/lab", "/"),
])
def test_a_launched_server_opens_an_interface_its_image_has(
        app: Flask, engine: docker.DockerClient, lab_image: str, image: str, default_url: str,
        found: str) -> None:
    launcher = DockerLauncher(engine, {**app.config["BINDERY"], "default_url": default_url,
                                       "quota_per_repo": 0})
    launch = {"id": uuid.uuid4().hex, "image": image, "repo_url": "http://127.0.0.1:1/ui.git",
              "resolved_ref": "abc"}
    events: list[dict[str, Any]] = []
    with app.app_context():
        try:
            url, token = launcher.launch(launch, events.append)
            root = requests.get(url, params={"token": token}, timeout=10, allow_redirects=False)
            page = requests.get(url + found.lstrip("/"), params={"token": token}, timeout=10)
        finally:
            launcher.stop(launch["id"])
    told = [event for event in events if "default_url" in event]
    if found == "/":
        # neither interface: the root is Jupyter Server's own page, and an event says why
        assert root.status_code == 200 and "A Jupyter Server is running" in root.text
        assert len(told) == 1 and told[0]["phase"] == "launching" and told[0]["default_url"] == "/", events
        assert told[0]["no_interface"] is True
        return
    assert page.status_code == 200, f"the image serves {found}"
    # the server's own root leads to the setting, token kept
    assert root.status_code == 302 and root.headers["Location"].startswith(f"{default_url}?"), root.headers
    if found == default_url:
        assert told == [], "the root leads there: the loading page needs no word"
    else:
        assert [(e["phase"], e["default_url"]) for e in told] == [("launching", found)], events
        assert "no_interface" not in told[0]


def test_a_launch_waits_its_turn_while_the_starts_are_full_then_starts(
        app: Flask, engine: docker.DockerClient) -> None:
    """launch_start_concurrency 1 and another worker's start under way: told it is second, then started."""
    launcher = DockerLauncher(engine, {**app.config["BINDERY"], "launch_start_concurrency": 1, "quota_per_repo": 0})
    launch = {"id": uuid.uuid4().hex, "image": JUPYTER_IMAGE, "repo_url": "http://127.0.0.1:1/line.git",
              "resolved_ref": "abc", "created": time.time()}
    events: list[dict[str, Any]] = []
    with app.app_context():
        line = StartLine(redis_client.client, "start")
        other = f"other-{uuid.uuid4().hex[:8]}"
        assert line.admit(other, launch["created"] - 1, 1)[0]  # asked for earlier, starting now
        freed = threading.Timer(1.0, line.leave, args=(other,))
        freed.start()
        try:
            url, token = launcher.launch(launch, events.append)
            answer = requests.get(f"{url}api", params={"token": token}, timeout=10)
        finally:
            freed.join()
            launcher.stop(launch["id"])
        assert line.waiting() == 0 and line.admit(other, 0, 1)[0], "nothing left holding a slot"
        line.leave(other)
    assert answer.status_code == 200
    waits = [event for event in events if "ahead" in event]
    assert [(e["phase"], e["ahead"], e["message"]) for e in waits] == [
        ("launching", 1, "Waiting to start: 1 server is starting before yours.\n")], events
    assert events[events.index(waits[-1]) + 1]["message"] == "Your turn: starting your server...\n"


# --- behind configurable-http-proxy (tasks/backends/proxy_routes.py) -------------------------------

@pytest.fixture
def chp(tmp_path: Any) -> Iterator[Chp]:
    proxy = Chp(tmp_path / "chp").start()
    yield proxy
    proxy.stop()


def _proxied(app: Flask, chp: Chp, **settings: Any) -> dict[str, Any]:
    return {**app.config["BINDERY"], "proxy_api_url": chp.api_url, "proxy_auth_token": chp.token,
            "public_url": chp.url, "quota_per_repo": 0, **settings}


def test_behind_the_proxy_a_server_is_reached_under_user_id_on_the_proxy_s_origin_until_stopped(
        app: Flask, engine: docker.DockerClient, lab_image: str, chp: Chp) -> None:
    launcher = DockerLauncher(engine, _proxied(app, chp, default_url="/lab"))
    launch = {"id": uuid.uuid4().hex, "image": lab_image, "repo_url": "http://127.0.0.1:1/proxied.git",
              "resolved_ref": "abc"}
    with app.app_context():
        try:
            url, token = launcher.launch(launch, lambda event: None)
            assert url == f"{chp.url}/user/{launch['id']}/"
            port = int(proxy_routes.recorded(app.extensions["bindery.redis"])[f"/user/{launch['id']}"]
                       .rsplit(":", 1)[1])
            bindings = engine.api.inspect_container(f"bindery-{launch['id']}")["HostConfig"]["PortBindings"]
            assert {b["HostIp"] for binding in bindings.values() for b in binding} == {"127.0.0.1"}
            assert chp.api().routes()[f"/user/{launch['id']}"] == f"http://127.0.0.1:{port}"
            root = requests.get(url, params={"token": token}, timeout=10, allow_redirects=False)
            assert root.status_code == 302 and root.headers["Location"].startswith(f"/user/{launch['id']}/lab?")
            assert requests.get(f"{url}api", params={"token": token}, timeout=10).status_code == 200
            assert requests.get(f"{url}lab", params={"token": token}, timeout=10).status_code == 200
        finally:
            launcher.stop(launch["id"])
        assert f"/user/{launch['id']}" not in chp.api().routes()
        assert not proxy_routes.recorded(app.extensions["bindery.redis"]).get(f"/user/{launch['id']}")
        assert requests.get(f"{url}api", params={"token": token}, timeout=10).status_code in (404, 503)


def test_cleanup_removes_the_route_of_a_server_it_removes(
        app: Flask, engine: docker.DockerClient, started: list[Any], chp: Chp) -> None:
    gone = _sleeper(engine, app, "http://127.0.0.1:1/cleanup-route.git", time.time() - 7200)
    started.append(gone)
    launcher = DockerLauncher(engine, _proxied(app, chp))
    route_id = gone.labels[LABEL]
    with app.app_context():
        proxy_routes.add(app.extensions["bindery.redis"], chp.api(), route_id, "http://127.0.0.1:19698")
        assert launcher.cleanup(max_age=3600) >= 1
    assert f"/user/{route_id}" not in chp.api().routes()
