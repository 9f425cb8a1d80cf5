"""app/cors.py: which answers carry CORS headers, for which setting, and preflights.

The app comes from its factory with a real (embedded) Redis; requests go through Flask's
test client, so the hook runs as it does behind gunicorn.  What a real browser makes of
these headers is tests/system/test_cross_origin.py.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from app import cors, create_app
from app.errors import ConfigError
from app.redis_server import EmbeddedRedis

PAGE = "http://127.0.0.1:8123"
SSE = {"Accept": "text/event-stream", "Origin": PAGE}
PREFLIGHT = {"Origin": PAGE, "Access-Control-Request-Method": "GET",
             "Access-Control-Request-Headers": "cache-control"}
BUILD = "/build/gh/org/repo/HEAD"


def client_for(redis_server: EmbeddedRedis, origin: str) -> Any:
    return create_app({"redis_url": redis_server.url, "launcher": "bench",
                       "cors_allow_origin": origin, "enabled_providers": ["gh"]}).test_client()


@pytest.mark.parametrize("path, setting, expected", [
    ("/build/gh/a/b/HEAD", "", ""),
    ("/build/gh/a/b/HEAD", "*", "*"),
    ("/api/launches/x/position", PAGE, PAGE),
    ("/api/repoproviders", "*", "*"),
    ("/health", "", ""),                     # as today: closed unless configured
    ("/health", PAGE, PAGE),
    ("/versions", "", "*"),                  # as today and as BinderHub: open when unset
    ("/versions", PAGE, PAGE),               # the setting wins, as BinderHub's headers do
    ("/logs/gh/a/b/0123", "*", "*"),
    ("/", "*", ""),                          # pages are never opened
    ("/v2/gh/a/b/HEAD", "*", ""),
    ("/metrics", "*", ""),
    ("/buildx", "*", ""),
    ("/healthz", "*", ""),
])
def test_allowed_origin_by_path_and_setting(path: str, setting: str, expected: str) -> None:
    assert cors.allowed_origin(path, setting) == expected


def test_off_a_preflight_gets_no_cors_headers_so_the_browser_refuses(redis_server: EmbeddedRedis) -> None:
    client = client_for(redis_server, "")
    response = client.options(BUILD, headers=PREFLIGHT)
    assert response.status_code == 200  # Flask answers OPTIONS; without the headers that is a refusal
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Headers" not in response.headers
    assert client.get("/versions", headers={"Origin": PAGE}).headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Origin" not in client.get("/api/repoproviders", headers={"Origin": PAGE}).headers


@pytest.mark.parametrize("setting", ["*", PAGE])
def test_on_preflights_are_answered_for_the_api(redis_server: EmbeddedRedis, setting: str) -> None:
    client = client_for(redis_server, setting)
    for path in (BUILD, "/api/repoproviders", "/health", "/versions", "/logs/gh/org/repo/0123"):
        response = client.options(path, headers=PREFLIGHT)
        assert response.status_code == 200, path
        assert response.headers["Access-Control-Allow-Origin"] == setting, path
        allowed = {h.strip() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"cache-control", "last-event-id"} <= allowed
        assert "GET" in response.headers["Access-Control-Allow-Methods"]
        assert int(response.headers["Access-Control-Max-Age"]) > 0
        assert "Access-Control-Allow-Credentials" not in response.headers


def test_the_value_is_the_setting_never_the_request_origin(redis_server: EmbeddedRedis) -> None:
    client = client_for(redis_server, PAGE)
    response = client.get("/api/repoproviders", headers={"Origin": "https://evil.example"})
    assert response.headers["Access-Control-Allow-Origin"] == PAGE  # the browser then refuses evil.example


def test_the_event_stream_and_its_failures_carry_the_headers(redis_server: EmbeddedRedis) -> None:
    client = client_for(redis_server, "*")
    # a refused launch (bad spec) is a `failed` event on a 200 stream: a page must be able to read it
    response = client.get("/build/gh/not-a-spec", headers=SSE)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "x-ratelimit-remaining" in response.headers["Access-Control-Expose-Headers"]
    assert b'"failed"' in response.get_data()
    # an error answered as JSON (no Accept: text/event-stream) too
    refused = client.get(BUILD, headers={"Origin": PAGE})
    assert refused.status_code == 406
    assert refused.headers["Access-Control-Allow-Origin"] == "*"
    missing = client.get("/api/launches/" + "0" * 32 + "/position", headers={"Origin": PAGE})
    assert missing.status_code == 404
    assert missing.headers["Access-Control-Allow-Origin"] == "*"


def test_pages_stay_closed_when_the_api_is_open(redis_server: EmbeddedRedis) -> None:
    client = client_for(redis_server, "*")
    for path in ("/", "/about", "/v2/gh/org/repo/HEAD"):
        response = client.get(path, headers={"Origin": PAGE})
        assert "Access-Control-Allow-Origin" not in response.headers, path


@pytest.mark.parametrize("value", ["http://x/", "https://a.org/path", "foo", "* ", "http://a b",
                                   "https://a.org\n", "https://a.org,https://b.org", "null"])
def test_a_value_that_is_not_one_origin_or_star_stops_the_start(redis_server: EmbeddedRedis, value: str) -> None:
    with pytest.raises(ConfigError, match="cors_allow_origin"):
        create_app({"redis_url": redis_server.url, "launcher": "bench", "cors_allow_origin": value})


# --- the front door keeps working for cross-origin pages -------------------------------------

BAD_SPEC = "/build/gh/org/only-a-user"  # refused by the provider (400) after the limit is counted


def _final(response: Any) -> dict[str, Any]:
    lines = [line for line in response.get_data(as_text=True).splitlines() if line.startswith("data:")]
    return dict(json.loads(lines[-1][5:]))


def _visitor() -> str:
    """An address of a /64 no other test uses, so counts never carry over."""
    return f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::1"


def test_a_docs_site_s_launches_are_limited_per_visitor_not_per_site(redis_server: EmbeddedRedis) -> None:
    client = create_app({"redis_url": redis_server.url, "launcher": "bench", "cors_allow_origin": "*",
                         "rate_limit": 2, "rate_limit_period": 3600, "trusted_proxy_hops": 1}).test_client()
    site = {**SSE, "Origin": "https://docs.example.org"}  # every visitor's browser sends the site's origin
    first, second = _visitor(), _visitor()
    answers = [client.get(BAD_SPEC, headers={**site, "X-Forwarded-For": first}) for _ in range(3)]
    assert [_final(r)["status_code"] for r in answers] == [400, 400, 429]
    refused = answers[2]
    assert refused.headers["Access-Control-Allow-Origin"] == "*", "the page can read why it was refused"
    assert "retry-after" in refused.headers["Access-Control-Expose-Headers"]
    assert _final(client.get(BAD_SPEC, headers={**site, "X-Forwarded-For": second}))["status_code"] == 400, \
        "another visitor of the same site has an allowance of its own"


def test_a_build_token_from_bindery_s_page_is_refused_on_another_site(redis_server: EmbeddedRedis) -> None:
    client = create_app({"redis_url": redis_server.url, "launcher": "bench", "cors_allow_origin": "*",
                         "enabled_providers": ["gh"]}).test_client()
    page = client.get("/v2/gh/org/repo/HEAD").get_data(as_text=True)
    config = re.search(r'<script type="application/json" id="launch-config">(.*?)</script>', page)
    assert config, "the loading page embeds its launch config"
    token = json.loads(config.group(1))["buildToken"]
    answer = client.get(f"{BUILD}?build_token={token}", headers=SSE)  # SSE carries Origin: PAGE
    event = _final(answer)
    assert event["status_code"] == 403 and "another site" in event["message"], event


# --- launched servers trust the same origin --------------------------------------------------

@pytest.mark.parametrize("setting, expected", [
    ("", []),
    (PAGE, [f"--ServerApp.allow_origin={PAGE}"]),
    ("*", ["--ServerApp.allow_origin=*", "--ServerApp.allow_origin_pat=.*"]),  # as BinderHub's spawner
])
def test_the_docker_launcher_passes_the_setting_to_the_server(setting: str, expected: list[str]) -> None:
    from app.config import load_config
    from tasks.backends.docker_launcher import DockerLauncher

    for command in (["jupyter", "server"], ["/opt/own/start-server", "--debug"]):  # an operator's own command
        config = load_config({"cors_allow_origin": setting, "launch_command": command, "default_url": "/"},
                             environ={})
        args = DockerLauncher(None, config)._command(19650)  # type: ignore[arg-type]
        assert args[:len(command)] == command, "launch_command is kept as it is"
        assert [a for a in args if "allow_origin" in a] == expected


class _Spawner:
    """The part of a JupyterHub spawner the mixin builds on (the real hub is in
    tests/tasks/backends/test_jupyterhub_launcher.py)."""

    def __init__(self, user_options: dict[str, Any]) -> None:
        self.user_options = user_options

    def get_args(self) -> list[str]:
        return ["--port=8888"]


def _mixed() -> type:
    """BinderSpawnerMixin in front of the stand-in spawner (the mixin is a hub-side file)."""
    contrib = str(Path(__file__).resolve().parents[2] / "contrib" / "jupyterhub")
    if contrib not in sys.path:
        sys.path.insert(0, contrib)
    from bindery_spawner import BinderSpawnerMixin

    return type("Spawner", (BinderSpawnerMixin, _Spawner), {})


@pytest.mark.parametrize("origin, expected", [
    (None, []),
    ("", []),
    (PAGE, [f"--NotebookApp.allow_origin={PAGE}", f"--ServerApp.allow_origin={PAGE}"]),
    ("*", ["--NotebookApp.allow_origin=*", "--NotebookApp.allow_origin_pat=.*",
           "--ServerApp.allow_origin=*", "--ServerApp.allow_origin_pat=.*"]),
])
def test_the_spawner_mixin_passes_user_options_origin_in_both_spellings(origin: str | None,
                                                                        expected: list[str]) -> None:
    Spawner = _mixed()
    options = {} if origin is None else {"cors_allow_origin": origin}
    assert Spawner(options).get_args() == ["--port=8888", *expected]


@pytest.mark.parametrize("origin", ["https://a.org/x", "--ServerApp.token=", "* ", 5])
def test_the_spawner_mixin_refuses_what_is_not_an_origin(origin: Any) -> None:
    Spawner = _mixed()
    with pytest.raises(ValueError, match="cors_allow_origin"):
        Spawner({"cors_allow_origin": origin}).get_args()
