"""Build tokens: issued by the loading page, checked by the build API, on a real embedded Redis.

The browser's side (the page's EventSource carries the token) is in
tests/templates/test_loading_token.py; the real gunicorn path in tests/app/test_front_door.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

import pytest
import redis
from flask import Flask
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from app import build_tokens, create_app
from app.redis_server import EmbeddedRedis
from tests.app.test_rate_limit import fresh_ip

SSE = {"Accept": "text/event-stream"}
SPEC = "gh/org/only-a-user"  # a spec the gh provider refuses (400) after the token and limit checks


def _app(redis_server: EmbeddedRedis, **settings: Any) -> Flask:
    return create_app({"redis_url": redis_server.url, "launcher": "bench", "rate_limit": 1,
                       "rate_limit_period": 3600, "trusted_proxy_hops": 1, **settings})


def _events(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in response.get_data(as_text=True).splitlines()
            if line.startswith("data:")]


def page_token(client: Any, path: str, **headers: str) -> str | None:
    response = client.get(path, headers=headers)
    assert response.status_code == 200
    config = re.search(r'<script type="application/json" id="launch-config">(.*?)</script>',
                       response.get_data(as_text=True))
    assert config, "the page carries its launch config"
    token: str | None = json.loads(config.group(1))["buildToken"]
    return token


def build(client: Any, path: str, token: str | None = None, ip: str | None = None,
          **headers: str) -> tuple[Any, dict[str, Any]]:
    ip = ip or fresh_ip()
    query = f"?build_token={token}" if token is not None else ""
    response = client.get(f"{path}{query}", headers={**SSE, "X-Forwarded-For": ip, **headers})
    assert response.status_code == 200
    return response, _events(response)[-1]


def test_the_page_token_skips_the_rate_limit_for_its_own_spec(redis_server: EmbeddedRedis) -> None:
    client = _app(redis_server).test_client()
    page = client.get(f"/v2/{SPEC}")
    assert page.headers["Cache-Control"] == "no-store", "a cached page would hand out stale tokens"
    token = page_token(client, f"/v2/{SPEC}")
    assert token and len(token) < 250
    ip = fresh_ip()
    for _ in range(3):  # rate_limit is 1, yet every launch with the token is let through
        response, final = build(client, f"/build/{SPEC}", token, ip=ip)
        assert final["status_code"] == 400, final  # the provider's verdict: not rate limited
        assert "x-ratelimit-limit" not in response.headers
    response, final = build(client, f"/build/{SPEC}", ip=ip)
    assert final["status_code"] == 400 and response.headers["x-ratelimit-remaining"] == "0"
    _, final = build(client, f"/build/{SPEC}", ip=ip)
    assert final["status_code"] == 429, "without the token the limit applies"


@pytest.mark.parametrize(("headers", "says"), [
    ({"Origin": "https://elsewhere.example"}, "another site"),
    ({"Host": "bindery.elsewhere.example"}, "another site"),
])
def test_a_token_from_another_origin_is_refused(redis_server: EmbeddedRedis, headers: dict[str, str],
                                                says: str) -> None:
    client = _app(redis_server).test_client()
    token = page_token(client, f"/v2/{SPEC}")
    _, final = build(client, f"/build/{SPEC}", token, **headers)
    assert final["phase"] == "failed" and final["status_code"] == 403 and says in final["message"]
    assert token not in final["message"]
    same_site = {"Origin": "http://localhost"}  # the test client's Host is localhost
    _, final = build(client, f"/build/{SPEC}", token, **same_site)
    assert final["status_code"] == 400, "the page's own origin is fine"


def test_origin_check_can_be_turned_off(redis_server: EmbeddedRedis) -> None:
    client = _app(redis_server, build_token_check_origin=False).test_client()
    token = page_token(client, f"/v2/{SPEC}")
    _, final = build(client, f"/build/{SPEC}", token, Origin="https://elsewhere.example")
    assert final["status_code"] == 400


def test_a_token_for_another_spec_is_refused(redis_server: EmbeddedRedis) -> None:
    client = _app(redis_server).test_client()
    token = page_token(client, "/v2/gh/org/other/HEAD")
    _, final = build(client, f"/build/{SPEC}", token)
    assert final["status_code"] == 403 and "another repository" in final["message"]
    _, final = build(client, f"/build/gl/{SPEC[3:]}", token)
    assert final["status_code"] == 403, "nor for another provider"


def _signed(app: Flask, claims: dict[str, str], age: float) -> str:
    """A token signed with the app's real key as if issued ``age`` seconds ago."""
    with app.app_context():
        key = build_tokens.signing_key(app.extensions["bindery.redis"], app.config["BINDERY"]["build_token_secret"])

    class Aged(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - age)

    return str(URLSafeTimedSerializer(key, salt=build_tokens.SALT, signer=Aged,
                                      signer_kwargs={"digest_method": hashlib.sha256}).dumps(claims))


def test_an_expired_token_is_refused_with_how_to_get_a_new_one(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server, build_token_expires_seconds=60)
    client = app.test_client()
    claims = {"s": build_tokens._digest(SPEC), "o": build_tokens._digest("localhost")}
    _, final = build(client, f"/build/{SPEC}", _signed(app, claims, 30))
    assert final["status_code"] == 400, "a 30 s old token is still good"
    _, final = build(client, f"/build/{SPEC}", _signed(app, claims, 120))
    assert final["status_code"] == 403 and "expired" in final["message"] and "Reload" in final["message"]


@pytest.mark.parametrize("token", [
    ".", "a.b.c", "x" * 600, "%00", "%E2%98%83", "eyJzIjoiYSJ9.Zt0y7Q.AAAA", "null",
    "%FF%FE", "a" * 40 + "." + "b" * 6 + "." + "c" * 43,
])
def test_garbage_tokens_are_refused_cleanly(redis_server: EmbeddedRedis, token: str) -> None:
    client = _app(redis_server).test_client()
    _, final = build(client, f"/build/{SPEC}", token)
    assert final["phase"] == "failed" and final["status_code"] == 403, final
    assert "not valid" in final["message"]


def test_a_token_signed_with_another_key_is_refused(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server, build_token_secret="another-secret-of-enough-length")
    token = page_token(app.test_client(), f"/v2/{SPEC}")
    client = _app(redis_server, build_token_secret="the-real-secret-of-enough-length").test_client()
    _, final = build(client, f"/build/{SPEC}", token)
    assert final["status_code"] == 403


def test_without_a_configured_secret_every_process_shares_one_from_redis(redis_server: EmbeddedRedis) -> None:
    """Two apps stand for two web processes: a page from one, its stream on the other."""
    one, two = _app(redis_server).test_client(), _app(redis_server).test_client()
    token = page_token(one, f"/v2/{SPEC}")
    _, final = build(two, f"/build/{SPEC}", token)
    assert final["status_code"] == 400
    stored = redis.Redis.from_url(redis_server.url, decode_responses=True).get(build_tokens.SIGNING_KEY_NAME)
    assert stored and len(stored) >= 40


def test_a_configured_secret_is_not_put_in_redis(tmp_path: Any) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        app = create_app({"redis_url": server.url, "launcher": "bench",
                          "build_token_secret": "s3cret-that-is-long-enough"})
        assert page_token(app.test_client(), f"/v2/{SPEC}")
        assert redis.Redis.from_url(server.url).get(build_tokens.SIGNING_KEY_NAME) is None
    finally:
        server.stop()


def test_a_short_configured_secret_stops_the_start() -> None:
    from app.config import load_config
    from app.errors import ConfigError

    with pytest.raises(ConfigError, match="build_token_secret"):
        load_config({"build_token_secret": "short"}, environ={})
