"""Where code from a repository may connect: a network of its own, never this machine's.

A build's RUN steps and postBuild, and everything a visitor runs in a launched server, are
untrusted.  The rules, for ``launch_network`` / ``build_network`` = ``isolated`` (the default):

1. User code gets a network namespace of its own, with the public internet through the
   engine's user-mode network (Podman: slirp4netns without host loopback) or a bridge
   (Docker).  The host's 127.0.0.1 (Redis, the web, the registry, Flower, other servers'
   published ports) is out of reach.  A server is published on ``launch_host:<port>`` only.
2. Inside that namespace, before any user code runs, packet filter rules refuse new
   connections to ``user_egress_refused`` (private ranges, link-local and so the cloud
   metadata address, shared address space); DNS is sent to the namespace's own resolver.
   User code cannot change them (containers have no CAP_NET_ADMIN).
3. Podman's Docker-compatible build API runs every RUN step in the network of the engine
   process itself, whatever network mode is asked: an isolated build therefore runs in a
   Podman service of its own, started inside a namespace made for that build (rule 1 and 2
   applied to it), sharing the image store with the main engine; it is stopped, and the
   namespace removed, when the build ends.
4. ``host`` is the operator's explicit choice: it is warned about at start and in /health.

Where Bindery cannot apply rule 2 (a Docker engine), :func:`warnings` says what the operator
must add.  docs/security.md tells, per path, what user code can and cannot reach.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from ipaddress import ip_network
from typing import Any

import docker
import requests

from app.redis_server import stop_process

log = logging.getLogger(__name__)

ISOLATED = "isolated"
HOST = "host"
#: The port a server listens on inside its own namespace (published on launch_host:<port>).
INSIDE_PORT = 8888
#: Podman's user-mode network for servers: no way back to the host's loopback.
PODMAN_SERVER_NETWORK = "slirp4netns:allow_host_loopback=false"
#: The bridge Bindery creates for servers on Docker (no traffic between its containers).
DOCKER_SERVER_NETWORK = "bindery-users"
#: slirp4netns's resolver inside every namespace it serves (10.0.2.0/24 exists only in there).
SLIRP_DNS = "10.0.2.3"
#: Seconds a build engine or slirp4netns gets to come up.
START_TIMEOUT = 30.0
#: Build namespaces: ``<BUILD_NAMESPACE>-<creation time>-<hex>`` in NETNS_DIR (``ip netns``'s).
BUILD_NAMESPACE = "bindery-build"
NETNS_DIR = "/run/netns"
#: Seconds past build_timeout after which a build namespace is a dead worker's leftover.
STALE_AFTER = 300

_engine_kinds: dict[str, str] = {}


# --- the rules ----------------------------------------------------------------------------------

def filter_rules(refused: list[str], version: int) -> str:
    """iptables-restore input for one namespace: loopback and DNS allowed, ``refused`` refused."""
    networks = [net for net in refused if ip_network(net, strict=False).version == version]
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             "-A OUTPUT -o lo -j ACCEPT",
             "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"]
    if version == 4:
        lines += [f"-A OUTPUT -d {SLIRP_DNS}/32 -p {proto} --dport 53 -j ACCEPT" for proto in ("udp", "tcp")]
    tcp_reset = "tcp-reset"
    unreachable = "icmp-admin-prohibited" if version == 4 else "adm-prohibited"
    for net in networks:
        lines.append(f"-A OUTPUT -d {net} -p tcp -j REJECT --reject-with {tcp_reset}")
        lines.append(f"-A OUTPUT -d {net} -j REJECT --reject-with {unreachable}")
    lines.append("COMMIT")
    if version == 4:  # any resolver an image names (the host's may be private) is asked through slirp's
        lines += ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
                  ":POSTROUTING ACCEPT [0:0]",
                  *(f"-A OUTPUT ! -o lo -p {proto} --dport 53 -j DNAT --to-destination {SLIRP_DNS}:53"
                    for proto in ("udp", "tcp")), "COMMIT"]
    return "\n".join(lines) + "\n"


def seal(namespace: list[str], refused: list[str]) -> None:
    """Apply the rules in a namespace (``namespace``: nsenter's options naming it); raises when it cannot."""
    for version, tool in ((4, "iptables-restore"), (6, "ip6tables-restore")):
        done = subprocess.run(["nsenter", *namespace, tool], input=filter_rules(refused, version),
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise NetworkSetupError(f"{tool} in the user namespace failed: {done.stderr.strip()[:300]}")


class NetworkSetupError(RuntimeError):
    """A namespace for user code could not be made or sealed: nothing user-made runs without one."""


def describe(exc: BaseException) -> str:
    """What to tell a user about a failed container start (the engine's words, ours, or the error's kind)."""
    if isinstance(exc, NetworkSetupError):
        return str(exc)
    return str(getattr(exc, "explanation", None) or type(exc).__name__)


def missing_tools() -> list[str]:
    """What this process lacks to make and seal namespaces itself (empty: it can)."""
    missing = [tool for tool in ("nsenter", "iptables-restore", "ip6tables-restore", "ip", "slirp4netns", "podman")
               if not shutil.which(tool)]
    if os.geteuid() != 0:
        missing.append("root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    return missing


# --- which engine -------------------------------------------------------------------------------

def engine_kind(client: Any) -> str:
    """``podman`` or ``docker``: the engines isolate differently (asked once per engine and process).

    Podman names itself in its ``/_ping`` headers; ``/version`` would say so too, at 0.4 s of dpkg
    lookups in the engine each time.
    """
    api = getattr(client, "api", client)
    url = str(getattr(api, "base_url", ""))
    if url not in _engine_kinds:
        response = api.get(api._url("/_ping"))
        api._raise_for_status(response)
        podman = "Libpod-Api-Version" in response.headers
        _engine_kinds[url] = "podman" if podman else "docker"
    return _engine_kinds[url]


# --- launched servers ---------------------------------------------------------------------------

def server_listen(config: dict[str, Any], port: int) -> tuple[str, int]:
    """(address, port) the server listens on inside its container."""
    if config["launch_network"] == HOST:
        return config["launch_host"], port
    return "0.0.0.0", INSIDE_PORT


def run_server(client: Any, config: dict[str, Any], port: int, image: str, command: list[str],
               **create: Any) -> Any:
    """Create, seal and start a server's container; returns it (removed again if sealing fails)."""
    network = config["launch_network"]
    if network == HOST:
        return client.containers.run(image, command, detach=True, network_mode=HOST, **create)  # the operator said so
    kind = engine_kind(client)
    if network == ISOLATED:
        network = PODMAN_SERVER_NETWORK if kind == "podman" else _docker_network(client)
    options = {"detach": True, "network_mode": network,
               "ports": {f"{INSIDE_PORT}/tcp": (config["launch_host"], port)}, **create}
    try:
        container = client.containers.create(image, command, **options)
    except docker.errors.ImageNotFound:  # in the registry only: pulled first, as `docker run` does
        client.images.pull(image)
        container = client.containers.create(image, command, **options)
    try:
        if kind == "podman" and config["user_egress_refused"]:
            # Podman makes the namespace at init, before the image's entrypoint (a repository's
            # `start` script) runs: the rules are in place before any user code.
            client.api.post(client.api._url("/libpod/containers/{0}/init", container.id)).raise_for_status()
            pid = client.api.inspect_container(container.id)["State"]["Pid"]
            seal(["--target", str(pid), "--net"], config["user_egress_refused"])
        container.start()
    except BaseException:
        with contextlib.suppress(docker.errors.APIError, requests.RequestException):
            container.remove(force=True)
        raise
    return container


def _docker_network(client: Any) -> str:
    """The bridge for servers on Docker, made on first use (no traffic between its containers)."""
    if not client.networks.list(names=[DOCKER_SERVER_NETWORK]):
        with contextlib.suppress(docker.errors.APIError):  # another worker made it meanwhile
            client.networks.create(DOCKER_SERVER_NETWORK, driver="bridge",
                                   options={"com.docker.network.bridge.enable_icc": "false"},
                                   labels={"org.bindery.network": "users"})
    return DOCKER_SERVER_NETWORK


# --- builds -------------------------------------------------------------------------------------

def build_kwargs(config: dict[str, Any]) -> dict[str, str]:
    """repo2docker's extra build arguments: a network mode only when one is named."""
    return {} if config["build_network"] == ISOLATED else {"network_mode": config["build_network"]}


@contextlib.contextmanager
def build_engine(config: dict[str, Any], engine_url: str, client: Any) -> Iterator[str]:
    """The engine URL a build talks to: on Podman with ``isolated``, an engine in a namespace of its own."""
    if config["build_network"] != ISOLATED or engine_kind(client) != "podman":
        yield engine_url
        return
    missing = missing_tools()
    if missing:
        raise NetworkSetupError("build_network is `isolated`, but this worker cannot make a network namespace for "
                                f"the build (missing: {', '.join(missing)}). Run the build worker as root with "
                                "iproute2, iptables, slirp4netns and podman, or set build_network: host to accept "
                                "that builds reach this machine's services.")
    remove_stale_namespaces(config["build_timeout"] + STALE_AFTER)
    with _namespace(config) as path, _podman_service(path) as url:
        yield url


def remove_stale_namespaces(older_than: float, now: float | None = None) -> list[str]:
    """Remove build namespaces left by a worker that died mid-build (by SIGKILL: no ``finally`` ran).

    A namespace's name carries its creation time; none outlives its build, which ends within
    ``build_timeout``.  Their slirp4netns and engine died with the worker (``_dies_with_parent``).
    """
    now = time.time() if now is None else now
    removed = []
    for name in os.listdir(NETNS_DIR) if os.path.isdir(NETNS_DIR) else []:
        match = re.fullmatch(rf"{BUILD_NAMESPACE}-(\d+)-[0-9a-f]+", name)
        if match and now - int(match.group(1)) > older_than:
            if subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30).returncode == 0:
                removed.append(name)
    if removed:
        log.info("removed %d build namespaces left by dead workers", len(removed))
    return removed


@contextlib.contextmanager
def _namespace(config: dict[str, Any]) -> Iterator[str]:
    """A sealed network namespace with slirp4netns in front of it; removed afterwards."""
    name = f"{BUILD_NAMESPACE}-{int(time.time())}-{secrets.token_hex(4)}"
    path = f"{NETNS_DIR}/{name}"
    _run(["ip", "netns", "add", name])
    slirp = None
    try:
        ready_r, ready_w = os.pipe()
        try:
            slirp = subprocess.Popen(
                [*_dies_with_parent(), "slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
                 f"--ready-fd={ready_w}", "--netns-type=path", path, "tap0"],
                pass_fds=(ready_w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True)
            os.close(ready_w)
            ready_w = -1
            if os.read(ready_r, 1) != b"1":
                raise NetworkSetupError("slirp4netns did not come up: "
                                        + (slirp.stderr.read(300).decode(errors="replace") if slirp.stderr else ""))
        finally:
            os.close(ready_r)
            if ready_w >= 0:
                os.close(ready_w)
        seal([f"--net={path}"], config["user_egress_refused"])
        yield path
    finally:
        if slirp is not None:
            _stop(slirp)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)


@contextlib.contextmanager
def _podman_service(namespace: str) -> Iterator[str]:
    """``podman system service`` inside the namespace, on a socket of its own; stopped afterwards."""
    directory = tempfile.mkdtemp(prefix="bindery-build-engine-")
    url = f"unix://{directory}/engine.sock"
    service = subprocess.Popen([*_dies_with_parent(), "nsenter", f"--net={namespace}", "podman", "system",
                                "service", "--time=0", url],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(f"{directory}/engine.sock"):
            if service.poll() is not None:
                raise NetworkSetupError("the build engine stopped at start: " + (
                    service.stderr.read(300).decode(errors="replace") if service.stderr else ""))
            if time.monotonic() > deadline:
                raise NetworkSetupError(f"the build engine did not answer within {START_TIMEOUT:.0f} s")
            time.sleep(0.05)
        yield url
    finally:
        _stop(service)
        shutil.rmtree(directory, ignore_errors=True)


def _answers(path: str) -> bool:
    """The engine on the unix socket ``path`` answers its ping."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
            return b"OK" in sock.recv(4096)
        except OSError:
            return False


def _dies_with_parent() -> list[str]:
    """Killed with the worker that started it, even by SIGKILL (no engine outlives its build)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def _stop(process: subprocess.Popen[bytes]) -> None:
    stop_process(process)
    if process.stderr:
        process.stderr.close()


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetworkSetupError(f"{command[0]} {command[1]} failed: {done.stderr.strip()[:300]}")


# --- what the operator is told --------------------------------------------------------------------

def warnings(config: dict[str, Any]) -> list[str]:
    """Start-up and /health warnings about what user code can reach under this configuration."""
    found = []
    if config["launcher"] == "docker" and config["launch_network"] == HOST:
        found.append("launch_network is `host`: every launched server shares this machine's network and can "
                     "reach Redis, the web, the registry and every other service on 127.0.0.1")
    if config["builder"] == "docker" and config["build_network"] == HOST:
        found.append("build_network is `host`: every build's RUN steps and postBuild share this machine's network "
                     "and can reach Redis, the registry and every other service on 127.0.0.1")
    if not config["user_egress_refused"]:
        found.append("user_egress_refused is empty: user code can reach private networks and the cloud metadata "
                     "address")
    return found
