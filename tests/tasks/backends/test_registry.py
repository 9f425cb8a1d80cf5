"""Tests of the image-existence check against real HTTP servers on 127.0.0.1.

The fake registry below is a threaded stdlib HTTP server whose token service
replays Docker Hub's documented token flow
(https://distribution.github.io/distribution/spec/auth/token/): a manifest
request without a valid bearer token gets ``401`` and
``WWW-Authenticate: Bearer realm=...,service=...,scope=...``; the client then
GETs the realm with ``service`` and ``scope`` (Basic credentials when it has
them, anonymous otherwise), receives ``{"token": ..., "expires_in": ...}`` and
retries with ``Authorization: Bearer``.  Variants cover Basic-only registries,
GCR-style ``_json_key`` logins and anonymous pull tokens.  When the reference
registry (``/usr/bin/docker-registry``) is installed, one test runs against it.
"""

from __future__ import annotations

import base64
import collections
import gzip
import hashlib
import io
import json
import re
import secrets
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests

from app.errors import RegistryError
from tasks.backends import registry
from tasks.backends.registry import (
    MANIFEST_TYPES,
    EngineStore,
    RegistryClient,
    make_image_store,
    parse_www_authenticate,
    split_image,
)

PASSWORD = "s3cr3t-Pa55word"
GCR_KEY = json.dumps({
    "type": "service_account",
    "project_id": "proj",
    "private_key_id": "0123abcd",
    "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEv:QIBAD,ANB=\n-----END PRIVATE KEY-----\n",
    "client_email": "pusher@proj.iam.gserviceaccount.com",
})


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests to 127.0.0.1 must not wander off to a proxy from the environment."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


# --- a fake registry with Docker Hub's token flow ------------------------------------------


class FakeRegistry:
    """State of one fake registry; the handler below reads and updates it."""

    def __init__(
        self,
        auth: str = "bearer",
        users: dict[str, str] | None = None,
        images: set[tuple[str, str]] | None = None,
        public: set[str] | None = None,
        service: str = "registry.docker.io",
        token_path: str = "/token",
        token_field: str = "token",
        expires_in: int | None = 300,
        manifest_status: int | None = None,
        token_status: int | None = None,
        grant_users: bool = True,
    ) -> None:
        self.auth = auth
        self.users = users or {}
        self.images = images or set()
        self.public = public or set()
        self.service = service
        self.token_path = token_path
        self.token_field = token_field
        self.expires_in = expires_in
        self.manifest_status = manifest_status
        self.token_status = token_status
        self.grant_users = grant_users
        self.tokens: dict[str, set[str]] = {}  # token -> repositories it may pull
        self.counts: collections.Counter[str] = collections.Counter()
        self.seen_accept: list[str] = []
        self.seen_authorization: list[str] = []
        self.port = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def basic_user(self, header: str | None) -> str | None:
        """The user whose Basic credentials are valid, "" for none sent, None for wrong ones."""
        if not header:
            return ""
        if not header.startswith("Basic "):
            return None
        username, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        return username if self.users.get(username) == password else None


def _make_handler(state: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    manifest_path = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  head: bool = False) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, status: int, payload: Any, head: bool = False, **headers: str) -> None:
            self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers},
                       head=head)

        def do_HEAD(self) -> None:
            self._manifest(head=True)

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == state.token_path:
                self._token(urllib.parse.parse_qs(query))
            else:
                self._manifest(head=False)

        def _manifest(self, head: bool) -> None:
            match = manifest_path.match(self.path)
            if not match:
                self._json(404, {"errors": [{"code": "NOT_FOUND"}]}, head=head)
                return
            repo, ref = match.group("repo"), match.group("ref")
            authorization = self.headers.get("Authorization") or ""
            with state.lock:
                state.counts["manifest"] += 1
                state.seen_accept.append(self.headers.get("Accept") or "")
                state.seen_authorization.append(authorization.split(" ")[0])
            if state.manifest_status:
                self._json(state.manifest_status, {"errors": [{"code": "UNKNOWN"}]}, head=head)
                return
            if state.auth == "basic":
                if not authorization or state.basic_user(authorization) in (None, ""):
                    state.counts["401"] += 1
                    self._json(401, {"errors": [{"code": "UNAUTHORIZED"}]}, head=head,
                               **{"WWW-Authenticate": 'Basic realm="Registry"'})
                    return
            else:
                token = authorization[7:] if authorization.startswith("Bearer ") else ""
                if repo not in state.tokens.get(token, set()):
                    state.counts["401"] += 1
                    challenge = (f'Bearer realm="{state.url}{state.token_path}",service="{state.service}",'
                                 f'scope="repository:{repo}:pull"')
                    self._json(401, {"errors": [{"code": "UNAUTHORIZED"}]}, head=head,
                               **{"WWW-Authenticate": challenge})
                    return
            if (repo, ref) in state.images:
                self._send(200, b"", {"Content-Type": MANIFEST_TYPES[0],
                                      "Docker-Content-Digest": "sha256:" + "0" * 64}, head=head)
            else:
                self._json(404, {"errors": [{"code": "MANIFEST_UNKNOWN"}]}, head=head)

        def _token(self, query: dict[str, list[str]]) -> None:
            with state.lock:
                state.counts["token"] += 1
            if state.token_status:
                self._json(state.token_status, {"details": "token service broken"})
                return
            user = state.basic_user(self.headers.get("Authorization"))
            if user is None:
                self._json(401, {"details": "incorrect username or password"})
                return
            if query.get("service") != [state.service]:
                self._json(400, {"details": "wrong service"})
                return
            scopes = query.get("scope", [])
            granted: set[str] = set()
            for scope in scopes:
                kind, repo, actions = scope.split(":")
                if kind != "repository" or "pull" not in actions.split(","):
                    self._json(400, {"details": f"bad scope {scope}"})
                    return
                # Like Docker Hub: users pull anything here, anonymous tokens only public repositories.
                if (user and state.grant_users) or repo in state.public:
                    granted.add(repo)
            token = secrets.token_urlsafe(24)
            with state.lock:
                state.tokens[token] = granted
            payload: dict[str, Any] = {state.token_field: token, "issued_at": "2024-01-01T00:00:00Z"}
            if state.expires_in is not None:
                payload["expires_in"] = state.expires_in
            self._json(200, payload)

    return Handler


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start fake registries on free 127.0.0.1 ports; all are stopped after the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(state: FakeRegistry) -> FakeRegistry:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
        server.daemon_threads = True
        state.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hub(serve: Any) -> FakeRegistry:
    return serve(FakeRegistry(users={"alice": PASSWORD}, images={("alice/bindery-x", "abc")}))


# --- split_image ---------------------------------------------------------------------------


@pytest.mark.parametrize(("image", "expected"), [
    ("gcr.io/proj/binder-x:abc", ("gcr.io", "proj/binder-x", "abc")),
    ("127.0.0.1:5000/bindery-x:sha", ("127.0.0.1:5000", "bindery-x", "sha")),
    ("user/img:tag", ("", "user/img", "tag")),
    ("ubuntu", ("", "library/ubuntu", "latest")),
    ("ubuntu:22.04", ("", "library/ubuntu", "22.04")),
    ("localhost/a/b:1", ("localhost", "a/b", "1")),
    ("localhost:5000/a", ("localhost:5000", "a", "latest")),
    ("docker.io/ubuntu", ("docker.io", "library/ubuntu", "latest")),
    ("quay.io/org/team/img", ("quay.io", "org/team/img", "latest")),
    ("user/img@sha256:" + "a" * 64, ("", "user/img", "sha256:" + "a" * 64)),
])
def test_split_image(image: str, expected: tuple[str, str, str]) -> None:
    assert split_image(image) == expected


@pytest.mark.parametrize("image", ["", "img:", "gcr.io/", "/img"])
def test_split_image_refuses_empty_parts(image: str) -> None:
    with pytest.raises(ValueError):
        split_image(image)


def test_parse_www_authenticate_keeps_commas_in_quoted_values() -> None:
    header = ('Bearer realm="https://auth.example/token",service="registry.example",'
              'scope="repository:a/b:pull,push", error="insufficient_scope"')
    assert parse_www_authenticate(header) == [("bearer", {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
        "error": "insufficient_scope",
    })]
    assert parse_www_authenticate('Basic realm="Registry"') == [("basic", {"realm": "Registry"})]
    assert parse_www_authenticate('BASIC realm=plain, charset="UTF-8"') == [
        ("basic", {"realm": "plain", "charset": "UTF-8"})]
    assert parse_www_authenticate("") == []


# --- Docker Hub style bearer tokens --------------------------------------------------------


def test_bearer_exists_true_and_false(hub: FakeRegistry) -> None:
    client = RegistryClient(hub.url, "alice", PASSWORD)
    assert client.exists("alice/bindery-x:abc") is True
    assert client.exists("alice/bindery-x:other") is False
    assert client.exists("alice/never-pushed:abc") is False
    # Every manifest request asks for all manifest kinds, so multi-arch and OCI images are found.
    for accept in hub.seen_accept:
        assert all(kind in accept for kind in MANIFEST_TYPES)


def test_token_is_fetched_once_per_scope_and_reused(hub: FakeRegistry) -> None:
    client = RegistryClient(hub.url, "alice", PASSWORD)
    assert client.exists("alice/bindery-x:abc")
    assert (hub.counts["token"], hub.counts["manifest"]) == (1, 2)  # 401, token, retry
    assert client.exists("alice/bindery-x:abc")
    assert not client.exists("alice/bindery-x:zzz")
    # Same scope: the cached token goes along up front, no 401 and no new token.
    assert (hub.counts["token"], hub.counts["manifest"], hub.counts["401"]) == (1, 4, 1)
    assert client.exists("alice/other:1") is False  # another repository is another scope
    assert hub.counts["token"] == 2


def test_token_is_refetched_after_expiry(hub: FakeRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(registry, "_monotonic", lambda: now[0])
    client = RegistryClient(hub.url, "alice", PASSWORD)
    assert client.exists("alice/bindery-x:abc")
    now[0] += 200
    assert client.exists("alice/bindery-x:abc")
    assert hub.counts["token"] == 1
    now[0] += 200  # past expires_in=300
    assert client.exists("alice/bindery-x:abc")
    assert hub.counts["token"] == 2


def test_missing_expires_in_defaults_to_sixty_seconds(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    state = serve(FakeRegistry(users={"alice": PASSWORD}, images={("alice/x", "1")}, expires_in=None))
    now = [0.0]
    monkeypatch.setattr(registry, "_monotonic", lambda: now[0])
    client = RegistryClient(state.url, "alice", PASSWORD)
    assert client.exists("alice/x:1")
    now[0] += 30
    assert client.exists("alice/x:1")
    assert state.counts["token"] == 1
    now[0] += 40
    assert client.exists("alice/x:1")
    assert state.counts["token"] == 2


def test_revoked_token_is_replaced_once(hub: FakeRegistry) -> None:
    client = RegistryClient(hub.url, "alice", PASSWORD)
    assert client.exists("alice/bindery-x:abc")
    hub.tokens.clear()  # the registry forgot every token (restart, key rotation)
    assert client.exists("alice/bindery-x:abc")
    assert hub.counts["token"] == 2


def test_wrong_password_is_refused_without_leaking_it(hub: FakeRegistry, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    wrong = "wrong-" + PASSWORD
    client = RegistryClient(hub.url, "alice", wrong)
    with pytest.raises(RegistryError) as info:
        client.exists("alice/bindery-x:abc")
    err = info.value
    assert err.status_code == 503
    assert "credentials" in err.message and "registry_password" in err.message
    assert hub.url in err.message and "alice/bindery-x" in err.message
    assert wrong not in err.message and PASSWORD not in err.message
    assert wrong not in caplog.text and wrong not in repr(client)
    assert hub.counts["token"] == 1


def test_login_without_pull_rights_is_refused(serve: Any) -> None:
    """The token service accepts the login but grants nothing: the second 401 is a credentials problem."""
    state = serve(FakeRegistry(users={"bob": PASSWORD}, grant_users=False))
    with pytest.raises(RegistryError, match="refused our credentials for bob/private"):
        RegistryClient(state.url, "bob", PASSWORD).exists("bob/private:1")
    assert state.counts["token"] == 1 and state.counts["manifest"] == 2


def test_token_service_failure_names_the_status(serve: Any) -> None:
    state = serve(FakeRegistry(users={"alice": PASSWORD}, token_status=502))
    with pytest.raises(RegistryError, match="token service .* failed with HTTP 502"):
        RegistryClient(state.url, "alice", PASSWORD).exists("alice/x:1")


# --- anonymous pull tokens -----------------------------------------------------------------


def test_anonymous_tokens_for_public_repositories(serve: Any) -> None:
    state = serve(FakeRegistry(images={("library/ubuntu", "22.04")}, public={"library/ubuntu"},
                               token_field="access_token"))
    client = RegistryClient(state.url)
    assert client.auth_config() is None
    assert client.exists("ubuntu:22.04") is True
    assert client.exists("ubuntu:99.99") is False
    assert state.counts["token"] == 1
    with pytest.raises(RegistryError, match="refused anonymous access to someone/private") as info:
        client.exists("someone/private:1")
    assert "registry_username" in info.value.message


# --- Basic auth only -----------------------------------------------------------------------


def test_basic_auth_registry(serve: Any) -> None:
    state = serve(FakeRegistry(auth="basic", users={"alice": PASSWORD}, images={("bindery-x", "sha")}))
    client = RegistryClient(state.url, "alice", PASSWORD)
    assert client.exists(f"127.0.0.1:{state.port}/bindery-x:sha") is True
    assert client.exists(f"127.0.0.1:{state.port}/bindery-x:nope") is False
    # After the first challenge, Basic goes along up front: one 401 in total, no token service.
    assert state.counts["401"] == 1 and state.counts["token"] == 0
    assert state.seen_authorization == ["", "Basic", "Basic"]
    assert client.auth_config() == {"username": "alice", "password": PASSWORD}


def test_basic_auth_wrong_password(serve: Any) -> None:
    state = serve(FakeRegistry(auth="basic", users={"alice": PASSWORD}))
    client = RegistryClient(state.url, "alice", "nope-" + PASSWORD)
    with pytest.raises(RegistryError, match="refused our credentials") as info:
        client.exists("bindery-x:sha")
    assert PASSWORD not in info.value.message
    # The client remembered Basic; a wrong password is still refused, not retried forever.
    with pytest.raises(RegistryError, match="refused our credentials"):
        client.exists("bindery-x:sha")


def test_basic_auth_without_credentials(serve: Any) -> None:
    state = serve(FakeRegistry(auth="basic", users={"alice": PASSWORD}))
    with pytest.raises(RegistryError, match="requires a login"):
        RegistryClient(state.url).exists("bindery-x:sha")


def test_credentials_in_the_url_are_used_but_never_shown(serve: Any) -> None:
    state = serve(FakeRegistry(auth="basic", users={"alice": PASSWORD}, images={("x", "1")}))
    client = RegistryClient(f"http://alice:{PASSWORD}@127.0.0.1:{state.port}/")
    assert client.url == state.url
    assert client.exists(f"127.0.0.1:{state.port}/x:1") is True
    state.manifest_status = 500
    with pytest.raises(RegistryError) as info:
        client.exists(f"127.0.0.1:{state.port}/x:1")
    assert PASSWORD not in info.value.message and state.url in info.value.message


# --- GCR style _json_key -------------------------------------------------------------------


def test_gcr_json_key_login(serve: Any) -> None:
    state = serve(FakeRegistry(users={"_json_key": GCR_KEY}, images={("proj/binder-x", "abc")},
                               service="gcr.io", token_path="/v2/token"))
    client = RegistryClient(state.url, "_json_key", GCR_KEY)
    assert client.exists("gcr.io/proj/binder-x:abc") is True
    assert client.exists("gcr.io/proj/binder-x:def") is False
    assert state.counts["token"] == 1
    assert client.auth_config() == {"username": "_json_key", "password": GCR_KEY}

    other_key = GCR_KEY.replace("0123abcd", "ffffffff")
    with pytest.raises(RegistryError, match="refused our credentials") as info:
        RegistryClient(state.url, "_json_key", other_key).exists("gcr.io/proj/binder-x:abc")
    assert "PRIVATE KEY" not in info.value.message and "ffffffff" not in info.value.message


# --- failures ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_registry() -> None:
    port = _free_port()  # bound, then closed: nothing listens there
    client = RegistryClient(f"http://alice:{PASSWORD}@127.0.0.1:{port}", timeout=2)
    with pytest.raises(RegistryError, match="unreachable") as info:
        client.exists("alice/x:1")
    message = info.value.message
    assert message.startswith(f"registry at http://127.0.0.1:{port} is unreachable: ")
    assert PASSWORD not in message and "alice" not in message
    assert len(message) < 160, message  # a short reason, not urllib3's wall of text


def test_registry_that_never_answers_times_out() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(5)  # connections queue up but nobody ever reads or answers
        client = RegistryClient(f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(RegistryError, match="unreachable: timed out"):
            client.exists("alice/x:1")
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_name_the_status(serve: Any, status: int) -> None:
    state = serve(FakeRegistry(manifest_status=status))
    with pytest.raises(RegistryError, match=f"HTTP {status}") as info:
        RegistryClient(state.url).exists("alice/x:1")
    assert info.value.status_code == 503


def test_unexpected_status_is_an_error_not_missing(serve: Any) -> None:
    state = serve(FakeRegistry(manifest_status=400))
    with pytest.raises(RegistryError, match="HTTP 400"):
        RegistryClient(state.url).exists("alice/x:1")


# --- the engine's own store and the choice between them -------------------------------------


class FakeImages:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.asked: list[str] = []

    def get(self, name: str) -> Any:
        self.asked.append(name)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


class FakeDockerClient:
    def __init__(self, outcome: Any) -> None:
        self.images = FakeImages(outcome)
        self.api = type("Api", (), {"base_url": "http://127.0.0.1:2375"})()


def _api_error(status: int) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError("engine trouble", response=response, explanation="boom")


def test_engine_store_maps_engine_answers() -> None:
    present = FakeDockerClient(object())
    assert EngineStore(present).exists("bindery-x:abc") is True
    assert present.images.asked == ["bindery-x:abc"]
    assert EngineStore(FakeDockerClient(docker.errors.ImageNotFound("no such image"))).exists("x:1") is False


@pytest.mark.parametrize("failure", [
    _api_error(500),
    requests.ConnectionError("Connection aborted. [Errno 111] Connection refused"),
    docker.errors.DockerException("Error while fetching server API version"),
])
def test_engine_store_failures_are_registry_errors(failure: Exception) -> None:
    with pytest.raises(RegistryError, match=r"container engine at http://127\.0\.0\.1:2375 is unreachable"):
        EngineStore(FakeDockerClient(failure)).exists("x:1")


def test_make_image_store_prefers_a_configured_registry() -> None:
    calls: list[int] = []

    def factory() -> FakeDockerClient:
        calls.append(1)
        return FakeDockerClient(object())

    store = make_image_store({"registry_url": "http://127.0.0.1:5000", "registry_username": "alice",
                              "registry_password": PASSWORD, "registry_timeout": 3.0}, factory)
    assert isinstance(store, RegistryClient)
    assert (store.url, store.timeout, store.auth_config()) == (
        "http://127.0.0.1:5000", 3.0, {"username": "alice", "password": PASSWORD})
    assert calls == []  # no engine connection when the registry is the store

    engine = make_image_store({"registry_url": None}, factory)
    assert isinstance(engine, EngineStore) and calls == [1]


# --- the real reference registry -----------------------------------------------------------

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_blob(base: str, repo: str, data: bytes) -> str:
    digest = _digest(data)
    started = requests.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=10)
    assert started.status_code == 202, started.text
    location = urllib.parse.urljoin(base, started.headers["Location"])
    sep = "&" if "?" in location else "?"
    done = requests.put(f"{location}{sep}digest={digest}", data=data, timeout=10,
                        headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    return digest


def _push_image(base: str, repo: str, tag: str) -> str:
    """Push a minimal one-layer image by hand; returns the manifest's digest."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    layer = gzip.compress(buf.getvalue())
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [_digest(buf.getvalue())]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPES[0],
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": len(config), "digest": _push_blob(base, repo, config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer), "digest": _push_blob(base, repo, layer)}],
    }).encode()
    put = requests.put(f"{base}/v2/{repo}/manifests/{tag}", data=manifest, timeout=10,
                       headers={"Content-Type": MANIFEST_TYPES[0]})
    assert put.status_code == 201, put.text
    return _digest(manifest)


@pytest.fixture
def reference_registry(tmp_path: Path) -> Iterator[str]:
    if not Path(REGISTRY_BIN).exists():
        pytest.skip("docker-registry (the reference registry) is not installed")
    port = _free_port()
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log_path = tmp_path / "registry.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log_file,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"docker-registry exited: {log_path.read_text()[-2000:]}")
            try:
                if requests.get(f"{base}/v2/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_against_the_reference_registry(reference_registry: str) -> None:
    base = reference_registry
    host = base.removeprefix("http://")
    client = RegistryClient(base, timeout=5)
    # Unknown repository (NAME_UNKNOWN) is "missing", not an error.
    assert client.exists(f"{host}/bindery-never-pushed:abc") is False

    digest = _push_image(base, "bindery-x", "abc")
    assert client.exists(f"{host}/bindery-x:abc") is True
    assert client.exists(f"{host}/bindery-x:def") is False  # MANIFEST_UNKNOWN in a known repository
    assert client.exists(f"{host}/bindery-x@{digest}") is True

    # A multi-arch index is found too, because we accept index media types.
    index = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPES[3], "manifests": [
        {"mediaType": MANIFEST_TYPES[0], "digest": digest,
         "size": len(requests.get(f"{base}/v2/bindery-x/manifests/abc", timeout=5,
                                  headers={"Accept": MANIFEST_TYPES[0]}).content),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    put = requests.put(f"{base}/v2/bindery-x/manifests/multi", data=index, timeout=10,
                       headers={"Content-Type": MANIFEST_TYPES[3]})
    assert put.status_code == 201, put.text
    assert client.exists(f"{host}/bindery-x:multi") is True


def test_remember_found_caches_hits_only() -> None:
    from tasks.backends.registry import RememberFound

    class Store:
        def __init__(self) -> None:
            self.calls = 0
            self.have: set[str] = set()

        def exists(self, image: str) -> bool:
            self.calls += 1
            return image in self.have

    store = Store()
    remembered = RememberFound(store, seconds=60)  # type: ignore[arg-type]
    assert not remembered.exists("a:1") and not remembered.exists("a:1")
    assert store.calls == 2, "a miss is asked again: a build may have landed"
    store.have.add("a:1")
    assert remembered.exists("a:1") and remembered.exists("a:1")
    assert store.calls == 3, "a hit is remembered"
    assert not RememberFound(store, seconds=0).exists("b:1")
