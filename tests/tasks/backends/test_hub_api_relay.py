"""contrib/jupyterhub/hub_api_relay.py without an engine: both sides, the container's in a namespace of its own.

Real: the hub side in a process of its own (stopped by pid), a stand-in hub API on the host's
127.0.0.1, and the container side run by ``unshare --net --pid`` (a fresh network namespace with
only its own loopback, as in a container without host loopback): through the relay the command
reaches the hub API at ``JUPYTERHUB_API_URL`` as given, and another listener on the host's
127.0.0.1 is refused.  Needs root (unshare), as the engine tests do.  The server side of a real
hub is in test_jupyterhub_launcher.py.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tasks.backends.test_jupyterhub_launcher import SPAWNER_DIR
from tests.tasks.backends.test_user_network import Listener

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="needs root and unshare for a network namespace")

# Inside the namespace: the hub API at the URL the hub gave, then a host port that must be refused.
CLIENT = """
import os, socket, sys, urllib.request
with urllib.request.urlopen(os.environ["JUPYTERHUB_API_URL"] + "/info", timeout=10) as answer:
    print("hub:", answer.status, answer.read().decode(), flush=True)
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
    print("redis: CONNECTED")
except ConnectionRefusedError:
    print("redis: REFUSED")
"""


class _HubApi(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hub api {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub_api() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HubApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def relay_dir(tmp_path: Path, hub_api: int) -> Iterator[Path]:
    """The hub's side, as jupyterhub_config.py runs it, in a process stopped by pid afterwards."""
    directory = tmp_path / "hub-api"
    hub = subprocess.Popen([sys.executable, "-c", (
        f"import sys, time; sys.path.insert(0, {str(SPAWNER_DIR)!r}); import hub_api_relay; "
        f"hub_api_relay.serve_hub_api({str(directory)!r}, '127.0.0.1', {hub_api}); print('ready', flush=True); "
        "time.sleep(3600)")], stdout=subprocess.PIPE, text=True)
    try:
        assert hub.stdout is not None and hub.stdout.readline().strip() == "ready"
        yield directory
    finally:
        hub.terminate()
        hub.wait(10)
        if hub.stdout:
            hub.stdout.close()


def test_a_command_in_its_own_namespace_reaches_the_hub_api_through_the_relay_only(
        relay_dir: Path, hub_api: int) -> None:
    assert (relay_dir / "hub-api.sock").is_socket() and (relay_dir / "hub_api_relay.py").is_file()
    redis = Listener()
    try:
        env = {**os.environ, "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub_api}/hub/api"}
        started = time.monotonic()
        done = subprocess.run(
            ["unshare", "--net", "--pid", "--fork", "--kill-child", "sh", "-c",
             'ip link set lo up && exec "$@"', "sh",
             sys.executable, str(relay_dir / "hub_api_relay.py"), "--",
             sys.executable, "-c", CLIENT, str(redis.port)],
            env=env, capture_output=True, text=True, timeout=60)
        said = done.stdout + done.stderr
        assert done.returncode == 0, said
        assert "hub: 200 hub api /hub/api/info" in said, said
        assert "redis: REFUSED" in said, said
        assert redis.accepted == 0
        assert time.monotonic() - started < 30
    finally:
        redis.close()


def test_without_a_loopback_api_url_the_command_runs_without_a_relay(tmp_path: Path) -> None:
    shutil.copy(SPAWNER_DIR / "hub_api_relay.py", tmp_path)
    done = subprocess.run([sys.executable, str(tmp_path / "hub_api_relay.py"), "--", sys.executable, "-c",
                           "print('ran')"], env={**os.environ, "JUPYTERHUB_API_URL": "https://hub.example.org/hub/api"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "ran\n", done
    assert "not on loopback; nothing to relay" in done.stderr
