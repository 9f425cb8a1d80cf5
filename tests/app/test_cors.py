"""app/cors.py: which answers carry CORS headers, for which setting, and preflights.

The app comes from its factory with a real (embedded) Redis; requests go through Flask's
test client, so the hook runs as it does behind gunicorn.  What a real browser makes of
these headers is tests/system/test_cross_origin.py.
"""

from __future__ import annotations

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
