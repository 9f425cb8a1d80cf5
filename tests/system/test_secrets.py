"""A full launch with every secret setting configured: no secret shows anywhere a person can look.

Real: gunicorn, both Celery workers and beat (a Stack), Redis, repo2docker building through the
Podman engine, a Jupyter container, and the reference Registry v2 with htpasswd auth (bcrypt
hash from the C library's crypt), so the registry password is really used for the existence
check and the push.  The GitHub API cannot exist here: a loopback server replays a recorded
real commit answer (tests/providers/recordings/github_commit_200.json, sha replaced) and checks
the token arrives in the Authorization header; the clone itself comes from a real git server.

Searched: the web, worker and beat logs, every event of the launch, the build log page, /metrics
(the web's scrape includes the workers'), /health, /versions, the launch event file, the launched
container's labels and environment, the image's labels - for each secret as is, percent-escaped
and base64 (alone, and as user:password where it is a password).
"""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
import yaml

from app.config import ConfigSchema
from app.redis_server import stop_process
from tests.conftest import JUPYTER_IMAGE, GitServer
from tests.stack import ROOT, StackFactory, collect, run_prefix

pytestmark = [pytest.mark.integration, pytest.mark.engine]

MARK = uuid.uuid4().hex[:8]
#: The engine trusts plain HTTP on 127.0.0.1:5000 and the test ports (scripts/engine.sh); the test
#: ports belong to the session registry of concurrent runs, so the registry with auth takes 5000.
AUTH_REGISTRY_PORT = 5000
REGISTRY_USER = "bindery-robot"
SECRET = {
    "github_token": f"ghp-SECRET-github-token-{MARK}",
    "gitlab_token": f"glpat-SECRET-gitlab-{MARK}",
    "github_client_secret": f"SECRET-client-secret-{MARK}",
    "registry_password": f"SECRET-registry-pw-{MARK}",
    "hub_api_token": f"SECRET-hub-token-{MARK}",
    "flower_basic_auth": f"flower:SECRET-flower-{MARK}",
    "build_token_secret": f"SECRET-build-token-key-{MARK}",
    "git_ssh_key": f"SECRET-ssh-key-{MARK}",  # a file name: the path is what is secret here
    "git_credentials": f"SECRET-git-credential-{MARK}",
    "hub_oauth_client_secret": f"SECRET-hub-oauth-client-{MARK}",
    "session_secret": f"SECRET-session-cookie-key-{MARK}-{MARK}",
    "webhook_secret": f"SECRET-webhook-{MARK}",
    "webhook_repositories": f"SECRET-webhook-repo-{MARK}",
    "prebuild_tokens": f"SECRET-prebuild-token-{MARK}-{MARK}",
    "proxy_auth_token": f"SECRET-proxy-token-{MARK}",
}
CLIENT_ID = "bindery-client-id"
#: Secrets made by the service itself (the embedded Redis's password), added once the Stack runs.
MADE: dict[str, str] = {}


def secret_settings(directory: Path) -> dict[str, Any]:
    key = directory / f"id-{SECRET['git_ssh_key']}"
    key.write_text("not a real key\n")
    key.chmod(0o600)
    known = directory / "known_hosts"
    known.write_text("")
    return {
        "github_token": SECRET["github_token"], "gitlab_token": SECRET["gitlab_token"],
        "github_client_id": CLIENT_ID, "github_client_secret": SECRET["github_client_secret"],
        "registry_username": REGISTRY_USER, "registry_password": SECRET["registry_password"],
        "hub_api_token": SECRET["hub_api_token"], "flower_basic_auth": SECRET["flower_basic_auth"],
        "build_token_secret": SECRET["build_token_secret"],
        "hub_oauth_client_secret": SECRET["hub_oauth_client_secret"], "session_secret": SECRET["session_secret"],
        "git_ssh_key": str(key), "git_ssh_known_hosts": str(known),
        "git_credentials": {"https://git.example.org/": {"username": "bot", "password": SECRET["git_credentials"]}},
        "webhook_secret": SECRET["webhook_secret"],
        "webhook_repositories": {"https://git.example.org/org/repo": SECRET["webhook_repositories"]},
        "prebuild_tokens": {"ci": SECRET["prebuild_tokens"]},
        "proxy_auth_token": SECRET["proxy_auth_token"],
    }


def needles() -> dict[str, str]:
    """Every form a secret could leak in, named for the failure message."""
    forms: dict[str, str] = {}
    pairs = {"registry_password": f"{REGISTRY_USER}:{SECRET['registry_password']}",
             "github_client_secret": f"{CLIENT_ID}:{SECRET['github_client_secret']}",
             "github_token": f"{CLIENT_ID}:{SECRET['github_token']}"}
    for name, value in {**SECRET, **MADE}.items():
        password = value.split(":", 1)[-1]
        for text in {value, password, pairs.get(name, value)}:
            forms[f"{name} as is"] = value
            forms[f"{name} {text!r} escaped"] = urllib.parse.quote(text, safe="")
            for flavour, encode in (("base64", base64.b64encode), ("urlsafe base64", base64.urlsafe_b64encode)):
                forms[f"{name} {text!r} {flavour}"] = encode(text.encode()).decode().rstrip("=")
        forms[f"{name} secret part"] = password
    return forms


def assert_clean(where: str, text: str) -> None:
    found = [name for name, form in needles().items() if form and form in text]
    assert not found, f"{where} shows {found}"


def test_every_secret_setting_is_covered() -> None:
    """A new secret setting must be given a value here, so the launch below covers it."""
    secret_fields = {name for name, field in ConfigSchema().fields.items() if field.metadata.get("secret")}
    assert secret_fields == set(SECRET), f"give these a value in SECRET: {secret_fields ^ set(SECRET)}"


# --- services ----------------------------------------------------------------------------------

def bcrypt_hash(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # the C library's bcrypt; the registry accepts only bcrypt htpasswd entries

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    assert hashed and hashed.startswith("$2"), "this C library's crypt() has no bcrypt"
    return hashed


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The reference registry with htpasswd auth on 127.0.0.1:5000."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", AUTH_REGISTRY_PORT)) == 0:
            pytest.fail(f"127.0.0.1:{AUTH_REGISTRY_PORT} is taken; the registry with auth needs it")
    directory = tmp_path_factory.mktemp("auth-registry")
    (directory / "htpasswd").write_text(f"{REGISTRY_USER}:{bcrypt_hash(SECRET['registry_password'])}\n")
    (directory / "config.yml").write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(directory / "data")}},
        "http": {"addr": f"127.0.0.1:{AUTH_REGISTRY_PORT}"},
        "auth": {"htpasswd": {"realm": "bindery-test", "path": str(directory / "htpasswd")}},
    }))
    log = open(directory / "log", "wb")
    process = subprocess.Popen([shutil.which("docker-registry") or "docker-registry", "serve",
                                str(directory / "config.yml")], stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{AUTH_REGISTRY_PORT}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"{url}/v2/", timeout=1).status_code == 401:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (directory / "log").read_text()
            time.sleep(0.1)
        yield url
    finally:
        stop_process(process)
        log.close()


class GitHubReplay:
    """Replays a recorded commits answer for one repository; records each Authorization header."""

    def __init__(self, sha: str) -> None:
        recorded = json.loads((Path(__file__).parents[1] / "providers" / "recordings"
                               / "github_commit_200.json").read_text())
        body = json.dumps({**recorded["body"], "sha": sha}).encode()
        self.authorizations: list[str | None] = []
        replay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                replay.authorizations.append(self.headers.get("Authorization"))
                found = self.path.startswith("/repos/secrets-org/secret-repo/commits/")
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if found else 2))
                self.end_headers()
                self.wfile.write(body if found else b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- the launch --------------------------------------------------------------------------------

def test_full_launch_shows_no_secret(tmp_path: Path, git_server: GitServer, auth_registry: str,
                                     make_stack: StackFactory, engine: docker.DockerClient,
                                     launched_containers: list[str]) -> None:
    clone_url, sha = git_server.make_repo(f"FROM {JUPYTER_IMAGE}\nRUN echo {uuid.uuid4().hex} > /tmp/build-id\n")
    # github_url is the git server: <github_url>/secrets-org/secret-repo is that repository
    (git_server.root / "secrets-org").mkdir(exist_ok=True)
    (git_server.root / "secrets-org" / "secret-repo").symlink_to(git_server.root / clone_url.rsplit("/", 1)[1])
    github = GitHubReplay(sha)
    stack = make_stack("stack", {
        **secret_settings(tmp_path), "registry_url": auth_registry,
        "image_prefix": run_prefix(f"127.0.0.1:{AUTH_REGISTRY_PORT}/bindery-secrets-"),
        "github_api_url": github.url, "github_url": git_server.url, "keepalive_interval": 1,
        "launch_timeout": 180, "launch_event_sinks": ["file", "stdout"],
    }, registry=False, beat=True, directory=tmp_path / "stack", start=False, flower=True)
    try:
        stack.start()
        assert stack.redis.password
        MADE["redis_password"] = stack.redis.password
        events = collect(f"{stack.url}/build/gh/secrets-org/secret-repo/HEAD", timeout=600)
        raw_sse = requests.get(f"{stack.url}/build/gh/secrets-org/secret-repo/HEAD",
                               headers={"Accept": "text/event-stream", "Last-Event-ID": events[0][0] or ""},
                               timeout=60).text
        phases = [data["phase"] for _, data in events]
        assert phases[-1] == "ready", events[-5:]
        launched_containers.append(events[0][0].split("_")[0])  # type: ignore[union-attr]
        ready = events[-1][1]
        # the secrets were really used: the token reached the API, the password the registry
        assert github.authorizations and set(github.authorizations) == {f"token {SECRET['github_token']}"}
        image = ready["image"]
        assert requests.head(f"{auth_registry}/v2/", timeout=5).status_code == 401
        repository, tag = image.split("/", 1)[1].rsplit(":", 1)
        manifest = requests.head(f"{auth_registry}/v2/{repository}/manifests/{tag}", timeout=5,
                                 auth=(REGISTRY_USER, SECRET["registry_password"]),
                                 headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                                                    "application/vnd.oci.image.manifest.v1+json"})
        assert manifest.status_code == 200, "the push did not reach the registry with auth"

        assert_clean("the events", json.dumps([data for _, data in events]) + raw_sse)
        log_url = f"{stack.url}/logs/gh/secrets-org/secret-repo/{sha}"
        for variant in ("", "?format=text"):
            page = requests.get(log_url + variant, timeout=10)
            assert page.status_code == 200 and "build-id" in page.text, page.text[:300]
            assert_clean(f"the build log page{variant}", page.text)
        for path in ("/metrics", "/health", "/versions", "/", "/about", "/api/repoproviders",
                     "/v2/gh/secrets-org/secret-repo/HEAD"):
            assert_clean(path, requests.get(stack.url + path, timeout=30).text)
        events_file = tmp_path / "stack" / "launch-events.jsonl"
        assert sha[:7] in events_file.read_text() or "secrets-org" in events_file.read_text()
        assert_clean("the launch event file", events_file.read_text())
        containers = engine.containers.list(ignore_removed=True,
                filters={"label": [f"org.bindery.launch={launched_containers[0]}"]})
        assert len(containers) == 1
        attrs = containers[0].attrs
        env = [item for item in attrs["Config"]["Env"] if ready["token"] not in item]
        assert_clean("the container's labels and environment", json.dumps([attrs["Config"]["Labels"], env,
                                                                          attrs["Config"]["Cmd"]]))
        assert_clean("the image's labels", json.dumps(engine.images.get(image).labels))
        printout = subprocess.run([sys.executable, "-m", "app.cli", "config"], capture_output=True, text=True,
                                  env={**stack._env}, cwd=ROOT, timeout=60, check=True).stdout
        assert ":***@127.0.0.1" in printout, "the printout shows redis_url, its password masked"
        assert_clean("the config printout", printout)
        flower = f"http://127.0.0.1:{stack.flower_port}"
        login = tuple(SECRET["flower_basic_auth"].split(":", 1))
        assert requests.get(flower + "/", timeout=30).status_code == 401, "Flower asks for its login"
        for path in ("/", "/workers", "/broker", "/tasks", "/api/workers", "/api/tasks"):
            answer = requests.get(flower + path, auth=login, timeout=30)
            assert answer.status_code == 200, (path, answer.status_code)
            assert_clean(f"Flower's {path}", answer.text)
        with pytest.raises(AssertionError, match="redis_password"):  # the search does find it
            assert_clean("the Stack's Redis URL", stack.redis.url)
        with pytest.raises(AssertionError, match="registry_password"):  # the search does find them
            assert_clean("the config file", (tmp_path / "stack" / "bindery.yaml").read_text())
        with pytest.raises(AssertionError, match="base64"):
            assert_clean("a header", "Basic " + base64.b64encode(
                f"{REGISTRY_USER}:{SECRET['registry_password']}".encode()).decode())
    finally:
        stack.stop()
        github.stop()
    time.sleep(0.5)  # the logs are complete once every process has exited
    for role in ("web", "launch", "build", "beat", "flower"):
        text = (tmp_path / "stack" / f"{role}.log").read_text(errors="replace")
        assert text, role
        assert_clean(f"the {role} log", text)
