"""User code apart from the service's network: real engine, real Redis, real repo2docker.

A launched server and a build's RUN step each try the ports this machine's services listen on
(the test Redis, a web listener, another launched server's published port, the registry): every
connection is refused, while the server's published URL answers and ``pip`` reaches the package
index (the one place outside loopback these machines reach).  Every target is on 127.0.0.1: the
rules for private ranges and the metadata address are checked by reading them in the server's
namespace, never by sending anything there.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import threading
import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from flask import Flask

from app import create_app
from app.config import load_config
from app.redis_server import EmbeddedRedis
from providers import get_provider
from tasks.backends import user_network
from tasks.backends.docker_builder import DockerBuilder
from tasks.backends.docker_launcher import DockerLauncher
from tests.conftest import BASE_IMAGE, JUPYTER_IMAGE, LOOPBACK_ALLOWED, GitServer, remove_image_at_end
from tests.stack import run_prefix

# Tries each (name, port) given as JSON in argv[1]; prints one "name: REFUSED|CONNECTED|..." line each.
PROBE = """
import json, socket, sys
for name, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        print(f"{name}: CONNECTED", flush=True)
    except ConnectionRefusedError:
        print(f"{name}: REFUSED", flush=True)
    except OSError as exc:
        print(f"{name}: {type(exc).__name__}", flush=True)
"""


# --- the rules (no engine) ----------------------------------------------------------------------

def test_rules_refuse_private_and_metadata_networks_and_keep_loopback_and_dns() -> None:
    config = load_config(environ={})
    v4 = user_network.filter_rules(config["user_egress_refused"], 4)
    lines = v4.splitlines()
    assert lines.index("-A OUTPUT -o lo -j ACCEPT") < lines.index(
        "-A OUTPUT -d 10.0.0.0/8 -p tcp -j REJECT --reject-with tcp-reset"), "the namespace's own loopback first"
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"):
        assert f"-A OUTPUT -d {net} -j REJECT --reject-with icmp-admin-prohibited" in lines
    assert "-A OUTPUT -d 10.0.2.3/32 -p udp --dport 53 -j ACCEPT" in lines, "slirp's resolver stays reachable"
    assert "fc00::/7" not in v4 and "fc00::/7" in user_network.filter_rules(config["user_egress_refused"], 6)
    assert "*nat" not in user_network.filter_rules(config["user_egress_refused"], 6)


def test_host_networks_are_warned_about_and_isolated_is_the_default() -> None:
    config = load_config(environ={})
    assert (config["launch_network"], config["build_network"]) == ("isolated", "isolated")
    assert user_network.warnings(config) == []
    assert user_network.build_kwargs(config) == {}
    host = load_config({"launch_network": "host", "build_network": "host", "user_egress_refused": []}, environ={})
    said = " ".join(user_network.warnings(host))
    assert "launch_network is `host`" in said and "build_network is `host`" in said and "metadata" in said
    assert user_network.build_kwargs(host) == {"network_mode": "host"}


def test_namespaces_a_dead_build_worker_left_are_removed_and_others_kept() -> None:
    now = time.time()
    old = f"{user_network.BUILD_NAMESPACE}-{int(now) - 4000}-{uuid.uuid4().hex[:8]}"
    fresh = f"{user_network.BUILD_NAMESPACE}-{int(now)}-{uuid.uuid4().hex[:8]}"
    for name in (old, fresh):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        removed = user_network.remove_stale_namespaces(3600, now)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert old in removed and old not in left
        assert fresh not in removed and fresh in left, "a namespace of a build still running stays"
    finally:
        for name in (old, fresh):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


class _RecordingDocker:
    """A Docker engine's client as far as run_server uses it: no Docker engine can run here, so
    this records what Bindery asks of one (our own logic; Podman's path runs for real below)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.api = self
        self.base_url = "unix:///recording-docker.sock"
        self.networks = self
        self.containers = self

    def _url(self, path: str) -> str:
        return f"http+docker://localhost{path}"

    def get(self, url: str) -> Any:
        """Docker Engine 27's answer to /_ping, its headers as it sends them (no Libpod-* among them)."""
        assert url.endswith("/_ping"), url
        return types.SimpleNamespace(status_code=200, headers={
            "Api-Version": "1.47", "Builder-Version": "2", "Docker-Experimental": "false", "Ostype": "linux",
            "Server": "Docker/27.3.1 (linux)", "Swarm": "inactive"})

    def _raise_for_status(self, response: Any) -> None:
        assert response.status_code == 200

    def list(self, names: list[str]) -> list[Any]:
        return []

    def create(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(("create", (args, kwargs)))
        return self

    def start(self) -> None:
        self.calls.append(("start", None))


def test_on_docker_servers_join_a_bridge_without_inter_container_traffic_published_on_loopback() -> None:
    client = _RecordingDocker()
    config = load_config(environ={})
    user_network.run_server(client, config, 19999, "img", ["jupyter", "server"], name="bindery-x")
    assert [name for name, _ in client.calls] == ["create", "create", "start"]
    (args, network), (image_args, server) = client.calls[0][1], client.calls[1][1]
    assert args == (user_network.DOCKER_SERVER_NETWORK,)
    assert network["options"] == {"com.docker.network.bridge.enable_icc": "false"}
    assert image_args == ("img", ["jupyter", "server"])
    assert server["network_mode"] == user_network.DOCKER_SERVER_NETWORK
    assert server["ports"] == {"8888/tcp": ("127.0.0.1", 19999)} and server["name"] == "bindery-x"


# --- on the real engine -------------------------------------------------------------------------

class Listener:
    """A TCP listener on 127.0.0.1 standing for one of the host's services; counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def services(redis_server: EmbeddedRedis) -> Iterator[dict[str, int]]:
    """The host's services a repository must not reach, each listening on 127.0.0.1."""
    web, registry = Listener(), Listener()
    yield {"redis": redis_server.port, "web": web.port, "registry": registry.port}
    assert (web.accepted, registry.accepted) == (0, 0), "user code reached a host service"
    web.close()
    registry.close()


@pytest.fixture
def app(redis_server: EmbeddedRedis, docker_host: str) -> Flask:
    return create_app({"redis_url": redis_server.url, "docker_host": docker_host,
                       "instance_name": f"test-{uuid.uuid4().hex[:12]}", "launch_ports": "19700-19799",
                       "quota_per_repo": 0, "default_url": "/", **LOOPBACK_ALLOWED})


def _in_container(container_id: str, *command: str) -> str:
    # the engine's CLI: docker-py's exec_run through Podman loses output now and then
    done = subprocess.run(["podman", "exec", container_id, *command], capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


def _slirp_of(namespace: str) -> list[str]:
    """The command line of the slirp4netns serving the network namespace at path ``namespace``."""
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if args and args[0].endswith("slirp4netns") and namespace in args:
            return args
    raise AssertionError(f"no slirp4netns serves the namespace {namespace}")


@pytest.mark.engine
def test_a_launched_server_reaches_none_of_the_hosts_services_but_reaches_the_index(
        app: Flask, engine: docker.DockerClient, services: dict[str, int]) -> None:
    launcher = DockerLauncher(engine, app.config["BINDERY"])
    first, second = ({"id": uuid.uuid4().hex, "image": JUPYTER_IMAGE, "repo_url": f"http://127.0.0.1:1/{n}.git",
                      "resolved_ref": "abc"} for n in ("a", "b"))
    with app.app_context():
        try:
            url, token = launcher.launch(first, lambda event: None)
            other_url, _ = launcher.launch(second, lambda event: None)
            # the published URL answers as before
            assert requests.get(f"{url}api", params={"token": token}, timeout=10).status_code == 200
            (container,) = engine.containers.list(filters={"label": f"org.bindery.launch={first['id']}"})
            other_port = int(other_url.rstrip("/").rsplit(":", 1)[1])
            targets = [*services.items(), ("other server", other_port)]
            said = _in_container(container.id, "python3", "-c", PROBE, json.dumps(targets))
            for name, _ in targets:
                assert f"{name}: REFUSED" in said, said
            attrs = engine.api.inspect_container(container.id)
            assert attrs["HostConfig"]["NetworkMode"].startswith("slirp4netns"), attrs["HostConfig"]["NetworkMode"]
            pid = str(attrs["State"]["Pid"])
            helper = _slirp_of(attrs["NetworkSettings"]["SandboxKey"])
            assert "--disable-host-loopback" in helper, f"the namespace's slirp4netns keeps host loopback: {helper}"
            bindings = [b for found in attrs["HostConfig"]["PortBindings"].values() for b in found]
            assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings), bindings
            # private ranges and the metadata address: read the rules in its namespace, send nothing there
            rules = subprocess.run(["nsenter", "--target", pid, "--net", "iptables-save"], capture_output=True,
                                   text=True, check=True).stdout
            for net in ("10.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"):
                assert f"-A OUTPUT -d {net} -p tcp -j REJECT --reject-with tcp-reset" in rules, rules
            # while the package index (the one place outside loopback these machines reach) answers
            said = _in_container(container.id, "pip", "download", "--no-deps", "-d", "/tmp/wheels", "six")
            assert "Successfully downloaded six" in said, said
        finally:
            launcher.stop(first["id"])
            launcher.stop(second["id"])


@pytest.mark.engine
def test_a_builds_run_steps_reach_none_of_the_hosts_services_but_reach_the_index(
        app: Flask, engine: docker.DockerClient, services: dict[str, int], git_server: GitServer) -> None:
    probe = base64.b64encode(PROBE.encode()).decode()
    dockerfile = (f"FROM {BASE_IMAGE}\n"
                  f"RUN echo {probe} | base64 -d > /tmp/probe.py && python3 /tmp/probe.py "
                  f"'{json.dumps(list(services.items()))}'\n"
                  "RUN python3 -m pip download --no-deps -d /tmp/wheels six\n")
    repo_url, sha = git_server.make_repo(dockerfile)
    config = {**app.config["BINDERY"]}
    image = f"{run_prefix('localhost/bindery-isolation-')}{uuid.uuid4().hex[:8]}:{sha[:12]}"
    repo = get_provider("git", f"{requests.utils.quote(repo_url, safe='')}/{sha}", config)
    events: list[dict[str, Any]] = []
    with app.app_context():
        try:
            DockerBuilder(config).build(repo, {"resolved_ref": sha, "image": image, "repo_url": repo_url,
                                               "provider": "git"}, events.append)
        finally:
            remove_image_at_end(image)
    log = "".join(event["message"] for event in events)
    for name in services:
        assert f"{name}: REFUSED" in log, log
    assert "Successfully downloaded six" in log, log
    assert engine.images.get(image), "the image is in the main engine's store"
