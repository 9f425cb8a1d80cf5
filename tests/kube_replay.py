"""A loopback HTTP server that replays recorded Kubernetes API responses.

No Kubernetes API server can run on these machines, so the builder's flows run
against this replay: the official ``kubernetes`` client talks real HTTP to
127.0.0.1 and gets back the JSON bodies, watch streams (one JSON event per
line) and log streams a real API server sends for the same requests, in the
shapes the Kubernetes API reference documents (Pod, Status, WatchEvent).
Every request is recorded, so tests assert what the client asked for.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from typing import Any

from kubernetes import client


def pod(name: str, phase: str, *, exit_code: int | None = None, created: str = "2024-07-01T10:00:00Z",
        reason: str | None = None) -> dict[str, Any]:
    """A Pod object as the API returns it (trimmed to the fields a build pod has)."""
    status: dict[str, Any] = {"phase": phase, "startTime": created}
    if reason:
        status["reason"] = reason
    if exit_code is not None:
        status["containerStatuses"] = [{
            "name": "builder", "ready": False, "restartCount": 0, "image": "repo2docker", "imageID": "",
            "state": {"terminated": {"exitCode": exit_code, "reason": "Error" if exit_code else "Completed",
                                     "startedAt": created, "finishedAt": created}},
        }]
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": "binder", "uid": f"uid-{name}", "resourceVersion": "1",
                         "creationTimestamp": created,
                         "labels": {"app.kubernetes.io/name": "bindery",
                                    "app.kubernetes.io/component": "bindery-build"}},
            "spec": {"containers": [{"name": "builder", "image": "repo2docker"}], "restartPolicy": "Never"},
            "status": status}


def status(code: int, reason: str, message: str, name: str = "", kind: str = "pods") -> dict[str, Any]:
    """The API's Status body for an error (e.g. 409 AlreadyExists, 404 NotFound)."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": {"name": name, "kind": kind}, "code": code}


def watch_events(*events: tuple[str, dict[str, Any]]) -> list[bytes]:
    return [json.dumps({"type": kind, "object": obj}).encode() + b"\n" for kind, obj in events]


class Response:
    def __init__(self, code: int, body: Any = None, *, chunks: list[bytes] | None = None,
                 content_type: str = "application/json") -> None:
        self.code = code
        self.body = body
        self.chunks = chunks
        self.content_type = content_type


class KubeReplay:
    """Serves queued responses per (method, path, watch?); records each request."""

    def __init__(self) -> None:
        self.queues: dict[tuple[str, str], list[Response]] = {}
        self.requests: list[dict[str, Any]] = []
        #: (method, path prefix): requests under the prefix get the responses queued for the prefix
        #: itself (for names Bindery makes up at random, such as a build's Secret)
        self.prefix_routes: list[tuple[str, str]] = []
        replay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query))
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path = next((prefix for method, prefix in replay.prefix_routes
                             if method == self.command and parts.path.startswith(prefix)), parts.path)
                key = (self.command, path + ("?watch" if query.get("watch") in ("true", "True") else ""))
                replay.requests.append({"method": self.command, "path": parts.path, "query": query, "body": body})
                queue = replay.queues.get(key) or []
                if not queue:
                    response = Response(500, status(500, "InternalError", f"replay: nothing recorded for {key}"))
                else:
                    response = queue.pop(0) if len(queue) > 1 else queue[0]
                self.send_response(response.code)
                self.send_header("Content-Type", response.content_type)
                if response.chunks is not None:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for chunk in response.chunks:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    data = json.dumps(response.body).encode()
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def on(self, method: str, path: str, *responses: Response, watch: bool = False) -> None:
        """Queue responses; the last one repeats for further requests."""
        self.queues.setdefault((method, path + ("?watch" if watch else "")), []).extend(responses)

    def api(self) -> client.CoreV1Api:
        configuration = client.Configuration(host=f"http://127.0.0.1:{self.httpd.server_address[1]}")
        return client.CoreV1Api(client.ApiClient(configuration))

    def calls(self, method: str, path_suffix: str = "") -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"].endswith(path_suffix)]

    def __enter__(self) -> KubeReplay:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

