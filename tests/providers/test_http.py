"""providers/http.py: the process's session, the environment read once, answers mapped to errors.

Requests go to loopback HTTP servers started here (the replaying ``api_server`` of
conftest.py, and a keep-alive one below to see connections reused).  Replaced: only
``os.getpid`` (to stand for a forked child), requests' own environment look-ups in one
test (by functions that fail, to show they are not called), and an answer that is not
JSON is built in place (the replay server only sends JSON).
"""

from __future__ import annotations

import http.server
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

import providers.http as provider_http
from app.config import load_config
from app.errors import NotFound, ProviderError, RateLimited
from app.netguard import AddressRefused
from providers import get_provider
from providers.http import (
    fetch,
    get_json,
    get_json_guarded,
    github_headers,
    github_rate_limit_remaining,
    json_body,
    new_session,
    observe_github_rate_limit,
    origin,
    proxies_for,
    reset_session,
    session,
)


@pytest.fixture(autouse=True)
def _fresh_session(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test reads the environment its own fixtures set; the next test starts afresh too."""
    monkeypatch.setattr(provider_http, "RETRY_DELAYS", (0.01, 0.02))
    reset_session()
    yield
    reset_session()


def reply(status: int, body: Any = None, **headers: str) -> dict[str, Any]:
    return {"status": status, "headers": headers, "body": {} if body is None else body}


def get(api_server: Any, path: str, **kwargs: Any) -> requests.Response:
    return fetch(session(), f"{api_server.url}{path}", {}, 5, "Test", f"{path} not found", **kwargs)


# --- the session -------------------------------------------------------------------------------

def test_importing_makes_no_session() -> None:
    code = "import providers, providers.http as h; assert h._shared is None"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=provider_http.__file__.rsplit("/", 2)[0])


def test_one_session_for_every_provider(make_config: Any) -> None:
    shared = session()
    assert session() is shared
    assert get_provider("gh", "u/r/main", make_config()).session is shared
    assert get_provider("gl", "g%2Fp/main", make_config()).session is shared
    assert shared.trust_env is False
    assert shared.get_adapter("https://api.github.com").poolmanager.connection_pool_kw["maxsize"] == \
        provider_http.POOL_SIZE


def test_new_session_for_other_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/curl.pem")
    made = new_session(128)
    try:
        assert made is not session() and made.trust_env is False and made.verify == "/etc/ssl/curl.pem"
        assert made.get_adapter("http://hub").poolmanager.connection_pool_kw["maxsize"] == 128
    finally:
        made.close()


def test_a_forked_child_makes_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = session()
    monkeypatch.setattr(provider_http.os, "getpid", lambda: -1)
    child = session()
    assert child is not parent and session() is child


def test_requests_does_not_read_the_environment_per_request(api_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("requests read the environment")

    session()
    monkeypatch.setattr(requests.sessions, "get_netrc_auth", refuse)
    monkeypatch.setattr(requests.sessions, "get_environ_proxies", refuse)
    monkeypatch.setattr(requests.utils, "get_environ_proxies", refuse)
    monkeypatch.setattr(requests.utils, "should_bypass_proxies", refuse)
    api_server.queue("/x", reply(200, {"ok": True}))
    assert get(api_server, "/x").json() == {"ok": True}


def test_proxies_come_from_the_environment_read_once(api_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The replay server doubles as the proxy: a proxied GET asks it for the absolute URL."""
    monkeypatch.setenv("HTTP_PROXY", api_server.url)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,.internal.example,10.0.0.0/8,exact.example:8080")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/bundle.pem")
    assert proxies_for("https://api.github.com/x") == {"https": "http://proxy.example:3128"}
    assert proxies_for("http://far.example/x") == {"http": api_server.url}
    for direct in ("http://127.0.0.1:9/x", "https://a.internal.example/x", "https://internal.example/x",
                   "http://10.1.2.3/x", "http://exact.example:8080/x"):
        assert proxies_for(direct) == {}, direct
    assert session().verify == "/etc/ssl/bundle.pem"

    api_server.queue("http://far.example/x", reply(200, {"via": "proxy"}))
    answer = fetch(session(), "http://far.example/x", {}, 5, "Test", "x not found")
    assert answer.json() == {"via": "proxy"}
    assert api_server.requests[-1][0] == "http://far.example/x"

    monkeypatch.delenv("HTTPS_PROXY")  # read when the session was made, not on every request
    assert proxies_for("https://api.github.com/x") == {"https": "http://proxy.example:3128"}
    reset_session()
    assert proxies_for("https://api.github.com/x") == {}


def test_no_proxy_star_and_no_proxies_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "*")
    assert proxies_for("https://api.github.com/x") == {}
    monkeypatch.delenv("HTTPS_PROXY")
    reset_session()
    assert provider_http._current().proxies == {"no": "*"}
    assert proxies_for("https://api.github.com/x") == {}


def test_cookies_do_not_follow_the_next_request(api_server: Any) -> None:
    api_server.queue("/c", reply(200, **{"Set-Cookie": "session=abc; Path=/"}))
    get(api_server, "/c")
    get(api_server, "/c")
    assert "cookie" not in api_server.requests[1][1]
    assert not session().cookies


class _KeepAlive(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    peers: list[int] = []

    def do_GET(self) -> None:
        self.peers.append(self.client_address[1])
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


def test_connections_are_reused_across_providers() -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/x"
        for _ in range(3):
            fetch(session(), url, {}, 5, "Test", "x not found")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    assert len(_KeepAlive.peers) == 3 and len(set(_KeepAlive.peers)) == 1


# --- answers to errors -------------------------------------------------------------------------

@pytest.mark.parametrize("answer, error, message, asked", [
    (reply(404), NotFound, "/x not found", 1),
    (reply(422), NotFound, "/x not found", 1),
    (reply(429, **{"retry-after": "120"}), RateLimited, "Test API rate limit exceeded, try again in 2 minutes", 1),
    (reply(403, **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": "600"}), RateLimited, "in 10 minutes", 1),
    (reply(403), ProviderError, "answered 403", 1),
    (reply(401), ProviderError, "refused the configured token (401)", 1),
    (reply(500), ProviderError, "answered 500 (tried 3 times)", 3),
    (reply(302, location="/y"), ProviderError, "answered 302", 1),
])
def test_answers_become_errors(api_server: Any, answer: dict[str, Any], error: type[Exception], message: str,
                               asked: int) -> None:
    api_server.queue("/x", answer)
    with pytest.raises(error) as err:
        get(api_server, "/x", allow_redirects=False)
    assert message in str(err.value)
    assert len(api_server.requests) == asked


def test_a_5xx_then_an_answer_is_retried(api_server: Any) -> None:
    api_server.queue("/x", reply(502), reply(200, {"n": 1}))
    assert get_json(session(), f"{api_server.url}/x", {}, 5, "Test", "gone") == {"n": 1}


def test_unreachable_and_invalid_json(closed_port: int) -> None:
    with pytest.raises(ProviderError, match=r"could not reach the Test API at http://127.0.0.1:\d+: "
                                            r"ConnectionError \(tried 3 times\)"):
        fetch(session(), f"http://127.0.0.1:{closed_port}/x", {}, 5, "Test", "gone")
    answer = requests.Response()
    answer.status_code, answer._content, answer.url = 200, b"{", "https://u:p@api.example/x"
    with pytest.raises(ProviderError, match=r"\Athe Test API at https://api.example answered with invalid JSON\Z"):
        json_body(answer, "Test")


def test_messages_never_carry_credentials_of_a_url(api_server: Any) -> None:
    api_server.queue("/x", reply(500))
    url = api_server.url.replace("http://", "http://user:s3cret@") + "/x"
    with pytest.raises(ProviderError) as err:
        fetch(session(), url, {}, 5, "Test", "gone")
    assert "s3cret" not in str(err.value) and "user" not in str(err.value)
    assert origin("https://u:p@[::1]:8443/a?b") == "https://[::1]:8443"


def test_guarded_get_refuses_private_hosts_and_redirects(api_server: Any, make_config: Any) -> None:
    api_server.queue("/x", reply(200, {"ok": True}))
    with pytest.raises(AddressRefused, match="CKAN site host 127.0.0.1 is not a public address"):
        get_json_guarded(session(), f"{api_server.url}/x", load_config({}, environ={}), "CKAN site", "CKAN", "gone")
    assert api_server.requests == []
    assert get_json_guarded(session(), f"{api_server.url}/x", make_config(), "CKAN site", "CKAN", "gone") == \
        {"ok": True}
    api_server.queue("/r", reply(301, location=f"{api_server.url}/x"))
    with pytest.raises(ProviderError, match="answered 301"):
        get_json_guarded(session(), f"{api_server.url}/r", make_config(), "CKAN site", "CKAN", "gone")


# --- the GitHub API ----------------------------------------------------------------------------

def test_github_headers() -> None:
    assert github_headers({}) == ({"Accept": "application/vnd.github+json"}, None)
    headers, auth = github_headers({"github_token": "t0k", "github_client_id": "id", "github_client_secret": "s"})
    assert headers["Authorization"] == "token t0k" and auth is None
    assert github_headers({"github_client_id": "id", "github_client_secret": "s"})[1] == ("id", "s")


def test_github_rate_limit_is_observed(api_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    api_server.queue("/x", reply(200, **{"x-ratelimit-remaining": "11", "x-ratelimit-limit": "60"}))
    with caplog.at_level(logging.WARNING, logger="providers.http"):
        get(api_server, "/x", observe=observe_github_rate_limit)
    assert github_rate_limit_remaining() == 11
    assert "GitHub rate limit remaining 11/60" in caplog.text
