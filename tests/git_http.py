"""git's smart HTTP protocol on loopback: ``git http-backend`` (the real CGI program) behind a tiny server.

Optionally behind HTTP Basic auth, as a private repository on a git host is, and
answering some paths with fixed JSON replies (a git host's API, replayed).
Repositories are served from ``root`` by path (``/org/repo`` -> ``root/org/repo``,
bare), like GitHub Enterprise or GitLab serve them.  Every request is recorded
(path, whether it carried credentials) so tests can check what git sent.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import threading
import urllib.parse
from pathlib import Path
from typing import Any

GIT_ENV = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.org", "GIT_COMMITTER_NAME": "Test",
           "GIT_COMMITTER_EMAIL": "test@example.org", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def make_bare_repo(path: Path, files: dict[str, str], *, branch: str = "main", tag: str | None = None) -> str:
    """A bare repository at ``path`` with one commit of ``files`` (and ``tag`` on it); returns the sha."""
    work = path.with_name(path.name + "-work")
    work.mkdir(parents=True)
    env = {**os.environ, **GIT_ENV}

    def git(*args: str, cwd: Path = work) -> str:
        return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q", "-b", branch)
    for name, text in files.items():
        (work / name).write_text(text)
    git("add", "--", *files)
    git("commit", "-q", "-m", "test repository")
    if tag:
        git("tag", "-a", "-m", "release", tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "-q", "--bare", str(work), str(path), cwd=work.parent)
    return git("rev-parse", "HEAD")


Reply = dict[str, Any]  # {"status": ..., "headers": {...}, "body": <JSON>}, as tests/providers/recordings


class SmartGitServer:
    """``git http-backend`` on 127.0.0.1; ``auth`` ((user, password) or a list of them) makes every
    git request need one; ``replies`` maps exact request paths to JSON replies (no auth asked)."""

    def __init__(self, root: Path, auth: tuple[str, str] | list[tuple[str, str]] | None = None,
                 replies: dict[str, Reply] | None = None) -> None:
        self.root = root
        self.auth = [auth] if isinstance(auth, tuple) else auth
        self.replies = replies if replies is not None else {}
        self.requests: list[tuple[str, bool]] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> SmartGitServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def authorized(self, header: str | None) -> bool:
        if not self.auth:
            return True
        return any(header == "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
                   for user, password in self.auth)


def _read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                return body
            body += handler.rfile.read(size)
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def _handler(server: SmartGitServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _serve(self) -> None:
            header = self.headers.get("Authorization")
            server.requests.append((self.path, header is not None))
            body = _read_body(self) if self.command == "POST" else b""
            reply = server.replies.get(self.path)
            if reply is not None:
                data = json.dumps(reply["body"]).encode()
                self.send_response(reply["status"])
                for key, value in {"Content-Type": "application/json", **reply.get("headers", {})}.items():
                    self.send_header(key, str(value))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if not server.authorized(header):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(server.root), "GIT_HTTP_EXPORT_ALL": "1",
                   "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
                   "REQUEST_METHOD": self.command, "PATH_INFO": urllib.parse.unquote(path),
                   "QUERY_STRING": query, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                   "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
                   "REMOTE_USER": "git" if server.auth else "",
                   "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                   "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", "")}
            done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60)
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode("latin-1").split("\r\n"):
                key, _, value = line.partition(":")
                if key.lower() == "status":
                    status = int(value.strip().split()[0])
                elif key:
                    headers.append((key, value.strip()))
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
