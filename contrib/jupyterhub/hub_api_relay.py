"""Exactly the hub's API, and nothing else of the host, inside user servers of their own network.

DockerSpawner on one machine: the hub listens on the host's 127.0.0.1, and a user server must
reach the hub's API (``JUPYTERHUB_API_URL``) for its login and activity.  ``network_name =
"host"`` would give it that and every other service on the host's loopback too (Redis, Bindery's
web, the registry).  With this relay the server runs in a network namespace of its own (Podman:
``slirp4netns:allow_host_loopback=false``; Docker: a bridge) and reaches the hub's API only:

- in the hub, :func:`serve_hub_api` (called from ``jupyterhub_config.py``) listens on a unix
  socket ``<directory>/hub-api.sock`` and forwards each connection to the hub's own
  ``host:port``; it copies this file into ``<directory>`` beside the socket;
- ``<directory>`` is bind-mounted (read-only) into every user container at ``/run/hub-api``;
- the container's command starts with ``python3 /run/hub-api/hub_api_relay.py``: it listens
  on the address of ``JUPYTERHUB_API_URL`` (``127.0.0.1:<hub port>``, the container's own
  loopback) in a child process, forwarding to the mounted socket, and ``exec``s the rest of its
  arguments (``jupyterhub-singleuser ...``).  The hub sets ``JUPYTERHUB_API_URL`` as always.

No address but the container's own loopback is ever used: nothing goes to slirp4netns's host
gateway or any private-range address.  This is what Zero to JupyterHub's singleuser
NetworkPolicy does on Kubernetes (servers reach the hub's API port only).

Standard library only: the container side runs with the image's ``python3``.  Use::

    import hub_api_relay
    relay_dir = hub_api_relay.serve_hub_api("/srv/jupyterhub/hub-api", "127.0.0.1", 8081)
    c.DockerSpawner.network_name = "slirp4netns:allow_host_loopback=false"  # Podman
    c.DockerSpawner.use_internal_ip = False
    c.DockerSpawner.host_ip = "127.0.0.1"
    c.DockerSpawner.volumes = {relay_dir: {"bind": hub_api_relay.MOUNT, "mode": "ro"}}
    c.DockerSpawner.cmd = hub_api_relay.command(["jupyterhub-singleuser"])
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable

#: Where the relay's directory is mounted inside user containers.
MOUNT = "/run/hub-api"
#: The unix socket's name in that directory.
SOCKET = "hub-api.sock"
_BUFFER = 65536


def command(rest: list[str], python: str = "python3") -> list[str]:
    """A user container's command: the relay first, then ``rest`` (e.g. ``["jupyterhub-singleuser"]``)."""
    return [python, f"{MOUNT}/{os.path.basename(__file__)}", "--", *rest]


# --- forwarding -----------------------------------------------------------------------------------

def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(_BUFFER)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


def _relay(client: socket.socket, connect: Callable[[], socket.socket]) -> None:
    """Join ``client`` to a new connection made by ``connect()``; both closed when both ways end."""
    try:
        upstream = connect()
    except OSError:
        client.close()
        return
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _accept_forever(listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # the listener was closed
        threading.Thread(target=_relay, args=(client, connect), daemon=True).start()


# --- the hub's side -------------------------------------------------------------------------------

def serve_hub_api(directory: str, hub_host: str, hub_port: int) -> str:
    """In the hub: ``<directory>/hub-api.sock`` forwarding to ``hub_host:hub_port``; returns ``directory``.

    Runs in a daemon thread of the calling process (it ends with the hub).  ``directory`` is made
    if needed and gets a copy of this file for the containers; anyone who can open the socket
    reaches the hub's API, as anyone on the host's loopback already can.
    """
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)  # noqa: S103 - the containers' user reads the relay from it
    shutil.copyfile(__file__, os.path.join(directory, os.path.basename(__file__)))
    os.chmod(os.path.join(directory, os.path.basename(__file__)), 0o644)
    path = os.path.join(directory, SOCKET)
    if os.path.exists(path):
        os.unlink(path)  # left by an earlier hub
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o666)  # noqa: S103 - the server's user in the container is not the hub's
    listener.listen(128)
    threading.Thread(target=_accept_forever, name="hub-api-relay", daemon=True,
                     args=(listener, lambda: socket.create_connection((hub_host, hub_port), timeout=30))).start()
    return directory


# --- the container's side -------------------------------------------------------------------------

def _unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def _die_with_parent() -> None:
    """SIGTERM when COMMAND ends, also where the container's first process is an init (Linux only)."""
    parent = os.getppid()
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it ended before the call
        os._exit(0)


def main(argv: list[str]) -> None:
    """``hub_api_relay.py -- COMMAND...``: relay ``JUPYTERHUB_API_URL``'s address, then exec COMMAND."""
    rest = argv[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if not rest:
        sys.exit("usage: hub_api_relay.py -- COMMAND [ARG...]")
    url = urllib.parse.urlsplit(os.environ.get("JUPYTERHUB_API_URL", ""))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), SOCKET)
    if url.hostname in ("127.0.0.1", "localhost", "::1") and url.port:
        family = socket.AF_INET6 if url.hostname == "::1" else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # bound and listening before the server starts: its first call to the hub queues, never fails
        listener.bind(("127.0.0.1" if url.hostname == "localhost" else url.hostname, url.port))
        listener.listen(128)
        if os.fork() == 0:  # the relay: lives as long as COMMAND (the container's first process)
            os.setsid()
            _die_with_parent()
            _accept_forever(listener, lambda: _unix(path))
            os._exit(0)
        listener.close()
    else:
        print(f"hub_api_relay: JUPYTERHUB_API_URL {url.geturl()!r} is not on loopback; nothing to relay",
              file=sys.stderr)
    os.execvp(rest[0], rest)  # noqa: S606 - the container's own command, as the hub set it


if __name__ == "__main__":
    main(sys.argv)
