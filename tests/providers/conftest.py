"""Fixtures for provider tests: config, a replaying API server, real git repositories and servers.

Everything listens on 127.0.0.1 only, and every process or thread started here is
stopped here, by its own handle.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.config import load_config
from app.redis_server import stop_process
from tests.conftest import LOOPBACK_ALLOWED

RECORDINGS = Path(__file__).parent / "recordings"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback traffic must never go through a proxy configured on the machine."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def make_config() -> Callable[..., dict[str, Any]]:
    """Validated settings (as the app would have them), with overrides."""
    return lambda **overrides: load_config({**LOOPBACK_ALLOWED, **overrides}, environ={})


@pytest.fixture
def recording() -> Callable[[str], dict[str, Any]]:
    """A recorded reply: ``{"status": ..., "headers": {...}, "body": ...}``."""
    def load(name: str) -> dict[str, Any]:
        return json.loads((RECORDINGS / f"{name}.json").read_text(encoding="utf-8"))
    return load


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    return free_port()


# --- replaying HTTP API -------------------------------------------------------------------------

@dataclass
class ReplayServer:
    """Answers each request path with the next queued reply and records what was asked."""

    url: str = ""
    replies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def queue(self, path: str, *replies: dict[str, Any]) -> None:
        self.replies.setdefault(path, []).extend(replies)


def _replay_handler(server: ReplayServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            queued = server.replies.get(self.path)
            reply = queued.pop(0) if queued and len(queued) > 1 else (queued[0] if queued else None)
            if reply is None:
                reply = {"status": 599, "headers": {}, "body": {"message": f"no reply for {self.path}"}}
            data = json.dumps(reply["body"]).encode()
            self.send_response(reply["status"])
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in reply.get("headers", {}).items():
                self.send_header(key, str(value))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def api_server() -> Iterator[ReplayServer]:
    """A threaded HTTP server on 127.0.0.1; the last queued reply for a path repeats."""
    state = ReplayServer()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _replay_handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


# --- real git repositories ----------------------------------------------------------------------

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.org",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@dataclass
class Repo:
    """A bare repository under ``base`` and the shas its refs must resolve to."""

    base: Path
    name: str
    shas: dict[str, str]

    @property
    def path(self) -> Path:
        return self.base / self.name


@pytest.fixture(scope="session")
def bare_repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """Branches (one with a slash), lightweight and annotated tags, a pull ref, a tag shadowed by a branch."""
    root = tmp_path_factory.mktemp("git")
    work = root / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    shas: dict[str, str] = {}
    for n in range(4):
        (work / "file.txt").write_text(f"{n}\n")
        git("add", "file.txt", cwd=work)
        git("commit", "-q", "-m", f"commit {n}", cwd=work)
        shas[f"c{n}"] = git("rev-parse", "HEAD", cwd=work)
    git("branch", "feature/x", shas["c1"], cwd=work)
    git("branch", "dup", shas["c2"], cwd=work)
    git("tag", "dup", shas["c0"], cwd=work)
    git("tag", "v-light", shas["c1"], cwd=work)
    git("tag", "-a", "-m", "release", "v1.0", shas["c2"], cwd=work)
    git("update-ref", "refs/pull/1/head", shas["c0"], cwd=work)
    shas["v1.0-object"] = git("rev-parse", "v1.0", cwd=work)
    base = root / "served"
    base.mkdir()
    git("clone", "-q", "--bare", str(work), str(base / "repo.git"), cwd=root)
    git("update-ref", "refs/pull/1/head", shas["c0"], cwd=base / "repo.git")
    git("update-server-info", cwd=base / "repo.git")
    return Repo(base=base, name="repo.git", shas=shas)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"git daemon exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"git daemon did not listen on 127.0.0.1:{port}")


@pytest.fixture(scope="session")
def git_daemon(bare_repo: Repo) -> Iterator[str]:
    """A real ``git daemon`` on loopback serving ``bare_repo``; yields its git:// base URL."""
    port = free_port()
    proc = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", f"--base-path={bare_repo.base}", "--export-all",
         "--listen=127.0.0.1", f"--port={port}", str(bare_repo.base)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, proc)
        yield f"git://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def dumb_http(bare_repo: Repo) -> Iterator[str]:
    """Python's http.server on loopback serving the repo as git's dumb HTTP protocol."""
    handler = functools.partial(_QuietFiles, directory=str(bare_repo.base))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def resolve_unchanged(provider: Any) -> Any:
    """``provider.resolve()``, failing if resolving changed the provider (parsed providers are shared)."""
    before = dict(vars(provider))
    found = provider.resolve()
    assert vars(provider) == before
    return found
