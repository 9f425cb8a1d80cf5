"""Authenticated Bindery (``auth_enabled``): log in through a real JupyterHub, launch into your own server.

Real: JupyterHub (PyPI) with configurable-http-proxy and its DummyAuthenticator (one shared
password, as the hub's own tests use), Bindery registered on it as an OAuth service; a whole
Bindery (gunicorn, both Celery workers, Redis: tests/stack.py) with the jupyterhub launcher;
repo2docker building through the Podman engine; DockerSpawner starting the user's named server
from that image; Debian's Chromium driven by Playwright doing the logins and following the
redirects.  One hub (configured with the chart's auth.enabled file) and one Bindery for the
module; the hub's servers are stopped with the hub and this hub's containers removed by their label.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest
import requests

from tasks.backends.jupyterhub_launcher import user_server_name
from tests.conftest import JUPYTER_IMAGE, GitServer
from tests.sessions import session_cookie
from tests.stack import Stack, StackFactory, collect, run_prefix
from tests.tasks.backends.test_jupyterhub_launcher import Hub

pytestmark = [pytest.mark.integration, pytest.mark.engine]

PASSWORD = secrets.token_urlsafe(12)
COOKIE = "bindery-session"

# After the launcher tests' hub config: a login with a password, then Bindery as an OAuth client
# of the hub exactly as charts/bindery's auth.enabled writes it (its bindery-hub-auth file).
HUB_LOGIN = """
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allow_all = True
"""


def chart_hub_config(bindery_url: str) -> str:
    """The chart's jupyterhub_config.d file for a Bindery at ``bindery_url`` (service "bindery")."""
    from tests.charts.test_bindery_chart import find, render

    # the chart refuses to render without the hub's public address; its hub-side file does not use it
    docs = render({"auth": {"enabled": True, "serviceName": "bindery",
                            "redirectUrl": f"{bindery_url}/oauth_callback"},
                   "config": {"BinderHub": {"hub_url": "https://hub.example.org/"}}})
    return str(find(docs, "ConfigMap", "bindery-hub-auth")["data"]["bindery-auth.py"])


class System:
    def __init__(self, hub: Hub, stack: Stack) -> None:
        self.hub, self.stack = hub, stack

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.hub.url}hub/api{path}", timeout=60,
                                headers={"Authorization": f"token {self.hub.token}"}, **kwargs)

    def link(self, repo_url: str, ref: str = "main") -> str:
        return f"{self.stack.url}/v2/git/{urllib.parse.quote(repo_url, safe='')}/{ref}"

    def servers(self, user: str) -> dict[str, Any]:
        answer = self.api("GET", f"/users/{user}")
        return dict(answer.json().get("servers") or {}) if answer.status_code == 200 else {}


@pytest.fixture(scope="module")
def system(make_module_stack: StackFactory, tmp_path_factory: pytest.TempPathFactory, docker_host: str,
           engine: docker.DockerClient) -> Iterator[System]:
    directory = tmp_path_factory.mktemp("auth")
    stack = make_module_stack("auth", {
        "launcher": "jupyterhub", "auth_enabled": True,
        "keepalive_interval": 1, "launch_timeout": 120, "image_prefix": run_prefix("bindery-auth-"),
    }, registry=False, directory=directory / "bindery", start=False)
    (directory / "hub").mkdir()
    hub = Hub(directory / "hub", docker_host,
              extra=HUB_LOGIN.format(password=PASSWORD) + chart_hub_config(stack.url))
    try:
        hub.wait()
        stack.settings.update({"hub_url": hub.url, "hub_api_token": hub.token})
        stack.start()
        yield System(hub, stack)
    finally:
        stack.stop()  # before the hub (the factory's stop at the module's end finds it stopped)
        hub.stop()
        for container in engine.containers.list(ignore_removed=True,
                all=True, filters={"label": [f"org.bindery.test-hub={hub.run_id}"]}):
            container.remove(force=True)


def log_in_at_hub(page: Any, user: str) -> None:
    """Fill the hub's login form (the page must be showing it)."""
    page.fill("#username_input", user)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")


def quick_dockerfile() -> str:
    """A new image in seconds; the file it adds is served only to the server's owner."""
    return f"FROM {JUPYTER_IMAGE}\nRUN echo build-id-{uuid.uuid4().hex} > /home/jovyan/build-id.txt\n"


def test_users_log_in_through_the_hub_and_launch_into_their_own_named_servers(
        system: System, browser: Any, git_server: GitServer) -> None:
    repo_url, sha = git_server.make_repo(quick_dockerfile())
    link = system.link(repo_url)
    name = user_server_name(repo_url, sha)
    server_url = f"{system.hub.url}user/alice/{name}/"

    alice = browser.new_context()
    page = alice.new_page()
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url) if request.is_navigation_request() else None)
    page.goto(link)
    assert page.url.startswith(f"{system.hub.url}hub/login"), page.url  # sent to the hub's login
    log_in_at_hub(page, "alice")
    # back on the page asked for, logged in, watching the build
    page.wait_for_url(link, timeout=60_000)
    assert page.text_content("#who").strip() == "Logged in as alice"
    assert page.get_attribute("#logout", "href") == "/logout"
    page.wait_for_function("document.getElementById('log').textContent.includes('build-id')", timeout=300_000)
    # ...and into alice's own named server once it is ready
    page.wait_for_url(f"{server_url}**", timeout=300_000)
    assert any(url.startswith(f"{system.stack.url}/oauth_callback?") for url in seen), seen
    assert "token=" not in page.url  # alice's hub login opens it: no token in any URL
    opened = page.goto(f"{server_url}files/build-id.txt")  # the server asks the hub who this is: alice
    assert opened is not None and opened.status == 200, opened and opened.status
    assert page.content().count("build-id-") == 1
    servers = system.servers("alice")
    assert list(servers) == [name] and servers[name]["ready"]
    started = servers[name]["started"]

    # the launch event says the launch was authenticated, never by whom
    events = (system.stack.directory / "launch-events.jsonl").read_text()
    assert json.loads(events.splitlines()[-1])["authenticated"] is True
    assert "alice" not in events

    # the same link again: back to the running server, not a second one
    page.goto(link)
    page.wait_for_url(f"{server_url}**", timeout=120_000)
    servers = system.servers("alice")
    assert list(servers) == [name] and servers[name]["started"] == started

    # bob logs in: alice's server is not his to open or to see; the same link gives him his own
    bob = browser.new_context()
    other = bob.new_page()
    other.goto(f"{system.hub.url}hub/login")
    log_in_at_hub(other, "bob")
    other.wait_for_url(f"{system.hub.url}hub/**", timeout=60_000)
    refused = other.goto(f"{server_url}files/build-id.txt")
    assert refused is not None and refused.status == 403, (refused and refused.status, other.url)
    assert bob.request.get(f"{system.hub.url}hub/api/users/alice").status in (403, 404)
    home = other.goto(f"{system.hub.url}hub/home")
    assert home is not None and name not in (other.content() or "")
    other.goto(link)
    other.wait_for_url(f"{system.hub.url}user/bob/{name}/**", timeout=300_000)
    assert list(system.servers("bob")) == [name]
    assert list(system.servers("alice")) == [name]

    # log out: Bindery forgets the session and sends the browser to the hub's logout
    page.goto(f"{system.stack.url}/about")
    page.click("#logout")
    assert not [c for c in alice.cookies() if c["name"] == COOKIE]
    again = alice.new_page()
    again.goto(link)
    assert again.url.startswith(f"{system.hub.url}hub/login"), again.url
    alice.close()
    bob.close()


def test_quotas_count_users_servers_and_a_cancelled_launch_removes_only_its_own(system: System) -> None:
    """Run after the launch above: alice and bob each have one server that Bindery started."""
    from app.config import load_config
    from app.errors import QuotaExceeded
    from tasks.backends.jupyterhub_launcher import JupyterHubLauncher

    def launcher(**settings: Any) -> JupyterHubLauncher:
        return JupyterHubLauncher(load_config({"launcher": "jupyterhub", "hub_url": system.hub.url,
                                               "hub_api_token": system.hub.token, **settings}, environ={}))

    launch = {"id": uuid.uuid4().hex, "user": "alice", "image": JUPYTER_IMAGE, "resolved_ref": "abc",
              "repo_url": "https://example.org/another.git", "ref_url": "", "origin": system.stack.url}
    with pytest.raises(QuotaExceeded, match=r"You have 1 servers running .* \(1\)"):
        launcher(max_servers_per_user=1).launch(launch, lambda event: None)
    assert launcher().running() == 2, "quota_total and /health count users' servers too"
    with pytest.raises(QuotaExceeded, match="full"):
        launcher(quota_total=2).launch(launch, lambda event: None)
    assert len(system.servers("alice")) == 1, "nothing was started"

    # a cancelled launch (tasks/beat/abandon.py calls stop) removes the server it started, and only that
    [bobs] = system.servers("bob").values()
    assert launcher().stop(uuid.uuid4().hex) == 0
    assert launcher().stop(bobs["user_options"]["bindery_launch"]) == 1
    assert system.servers("bob") == {} and len(system.servers("alice")) == 1
    assert system.api("GET", "/users/bob").status_code == 200, "the user stays: only the server goes"


def tamper(value: str) -> str:
    """The cookie with the first character of its payload changed (the signature no longer fits)."""
    return ("f" if value[0] != "f" else "g") + value[1:]


def test_without_a_good_session_build_fails_403_and_pages_go_to_the_hub(system: System) -> None:
    url = system.stack.url
    spec = urllib.parse.quote("http://127.0.0.1:9/nothing.git", safe="") + "/main"
    events = collect(f"{url}/build/git/{spec}", timeout=30)
    assert [data["phase"] for _, data in events] == ["failed"]
    failed = events[0][1]
    assert failed["status_code"] == 403
    assert "not logged in" in failed["message"] and f"{url}/v2/git/{spec}" in failed["message"]

    secret = (system.stack.directory / "session_secret").read_text().strip()  # made by the app: unset in config
    good = session_cookie(secret, {"user": "alice"})
    forged = session_cookie(secrets.token_urlsafe(48), {"user": "alice"})
    expired = session_cookie(secret, {"user": "alice"}, at=time.time() - 9 * 3600)  # session_max_age is 8 h
    page = f"{url}/v2/git/{spec}"
    for name, cookie in (("forged", forged), ("expired", expired), ("tampered", tamper(good))):
        answer = requests.get(page, cookies={COOKIE: cookie}, allow_redirects=False, timeout=10)
        assert answer.status_code == 302, name
        assert answer.headers["Location"].startswith(f"{system.hub.url}hub/api/oauth2/authorize?"), name
        events = collect(f"{url}/build/git/{spec}", headers={"Cookie": f"{COOKIE}={cookie}"}, timeout=30)
        assert events[0][1]["status_code"] == 403, name
    answer = requests.get(page, cookies={COOKIE: good}, allow_redirects=False, timeout=10)
    assert answer.status_code == 200 and "Logged in as <strong>alice</strong>" in answer.text


def other_state(state: str) -> str:
    """The state with its last character changed (always to another one)."""
    return state[:-1] + ("A" if state[-1] != "A" else "B")


def test_the_oauth_state_is_checked_and_used_once(system: System) -> None:
    browser = requests.Session()
    start = browser.get(system.link("http://127.0.0.1:9/nothing.git"), allow_redirects=False, timeout=10)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(start.headers["Location"]).query)
    assert query["client_id"] == ["service-bindery"] and query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [f"{system.stack.url}/oauth_callback"]
    state = query["state"][0]
    callback = f"{system.stack.url}/oauth_callback"

    wrong = browser.get(callback, params={"code": "x", "state": other_state(state)}, allow_redirects=False)
    assert wrong.status_code == 400 and "cannot be checked" in wrong.text
    # the wrong attempt used the pending log-in up: the right state is no good any more either
    late = browser.get(callback, params={"code": "x", "state": state}, allow_redirects=False)
    assert late.status_code == 400

    # a fresh log-in with the right state, but a code the hub never issued: the hub refuses it
    start = browser.get(system.link("http://127.0.0.1:9/nothing.git"), allow_redirects=False, timeout=10)
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(start.headers["Location"]).query)["state"][0]
    bogus = browser.get(callback, params={"code": hashlib.sha256(b"x").hexdigest(), "state": state},
                        allow_redirects=False)
    assert bogus.status_code == 403 and "refused this log-in" in bogus.text
    assert COOKIE not in bogus.text and system.hub.token not in bogus.text
    # another browser (no pending log-in in its cookie) cannot finish it
    assert requests.get(callback, params={"code": "x", "state": state}, allow_redirects=False).status_code == 400


def test_no_secret_in_logs_events_or_pages(system: System) -> None:
    """Run last: the hub's API token (also the OAuth client secret here) and the session key are nowhere."""
    secret = (system.stack.directory / "session_secret").read_text().strip()
    places = {role: (system.stack.directory / f"{role}.log").read_text(errors="replace")
              for role in system.stack.processes}
    places["launch events"] = (system.stack.directory / "launch-events.jsonl").read_text()
    for path in ("/about", "/versions", "/health", "/metrics"):
        places[path] = requests.get(f"{system.stack.url}{path}", timeout=30).text
    for where, text in places.items():
        assert system.hub.token not in text, f"hub token in {where}"
        assert secret not in text, f"session key in {where}"
