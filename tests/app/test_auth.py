"""app/auth.py on its own: the login redirect, sessions, the OAuth state, log-out; anonymous mode untouched.

The app comes from its factory with a real Redis.  No hub is asked anything here (the hub's
answers to a real login are in tests/system/test_auth.py): every refusal below happens before
Bindery would call the hub, and hub_url points at a closed port so a call would fail loudly.
"""

from __future__ import annotations

import json
import os
import stat
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app import create_app
from app.auth import COOKIE_NAME, safe_next
from app.errors import ConfigError
from app.redis_server import EmbeddedRedis, free_port
from app.session_secret import ensure_session_secret
from tests.sessions import session_cookie

SECRET = "s" * 40
SPEC = "git/" + urllib.parse.quote("https://example.org/repo.git", safe="") + "/main"


@pytest.fixture
def hub_url() -> str:
    return f"http://127.0.0.1:{free_port()}/"


@pytest.fixture
def auth_app(redis_server: EmbeddedRedis, hub_url: str, tmp_path: Path) -> Flask:
    return create_app({"redis_url": redis_server.url, "launcher": "jupyterhub", "auth_enabled": True,
                       "hub_url": hub_url, "hub_api_token": "t" * 32, "session_secret": SECRET,
                       "data_dir": str(tmp_path)})


def cookie(app: Flask, data: dict[str, Any], at: float | None = None, secret: str = SECRET) -> str:
    return session_cookie(secret, data, at)


def session_of(app: Flask, client: Any) -> dict[str, Any]:
    value = client.get_cookie(COOKIE_NAME)
    assert value is not None, "no session cookie"
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    return dict(serializer.loads(value.value))


def sse_events(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in response.get_data(as_text=True).splitlines()
            if line.startswith("data:")]


def test_anonymous_mode_is_unchanged(client: Any) -> None:
    page = client.get(f"/v2/{SPEC}")
    assert page.status_code == 200
    assert "Log out" not in page.get_data(as_text=True)
    assert client.get_cookie(COOKIE_NAME) is None and not page.headers.getlist("Set-Cookie")
    assert client.get("/oauth_callback").status_code == 404
    assert client.get("/logout").status_code == 404


def test_a_page_without_a_session_goes_to_the_hubs_authorize_with_state_and_pkce(
        auth_app: Flask, hub_url: str) -> None:
    client = auth_app.test_client()
    answer = client.get(f"/v2/{SPEC}?urlpath=lab")
    assert answer.status_code == 302
    location = urllib.parse.urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{hub_url}hub/api/oauth2/authorize"
    query = dict(urllib.parse.parse_qsl(location.query))
    assert query["client_id"] == "service-bindery" and query["response_type"] == "code"
    assert query["redirect_uri"] == "http://localhost/oauth_callback"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    pending = session_of(auth_app, client)["oauth"]
    assert pending["state"] == query["state"] and len(pending["state"]) >= 40
    assert pending["next"] == f"/v2/{SPEC}?urlpath=lab"  # the git spec's escapes survive the round trip
    set_cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert client.get("/").status_code == 302  # the landing page too
    assert client.get("/about").status_code == 200  # not everything


def test_build_without_a_session_is_a_failed_event_403_saying_how_to_log_in(auth_app: Flask) -> None:
    answer = auth_app.test_client().get(f"/build/{SPEC}", headers={"Accept": "text/event-stream"})
    assert answer.status_code == 200 and answer.mimetype == "text/event-stream"
    [failed] = sse_events(answer)
    assert failed["phase"] == "failed" and failed["status_code"] == 403
    assert "not logged in" in failed["message"] and f"http://localhost/v2/{SPEC}" in failed["message"]


@pytest.mark.parametrize("kind", ["forged", "expired", "tampered", "bad user"])
def test_a_bad_session_cookie_is_refused(auth_app: Flask, kind: str) -> None:
    value = {
        "forged": lambda: cookie(auth_app, {"user": "alice"}, secret="x" * 40),
        "expired": lambda: cookie(auth_app, {"user": "alice"}, at=time.time() - 8 * 3600 - 60),
        "tampered": lambda: "f" + cookie(auth_app, {"user": "alice"})[1:],  # payload starts "ey": changed
        "bad user": lambda: cookie(auth_app, {"user": "../admin\n"}),
    }[kind]()
    client = auth_app.test_client()
    client.set_cookie(COOKIE_NAME, value)
    assert client.get(f"/v2/{SPEC}").status_code == 302
    events = sse_events(client.get(f"/build/{SPEC}", headers={"Accept": "text/event-stream"}))
    assert events[0]["status_code"] == 403


def test_a_good_session_shows_who_is_logged_in_and_a_log_out_link(auth_app: Flask, hub_url: str) -> None:
    client = auth_app.test_client()
    client.set_cookie(COOKIE_NAME, cookie(auth_app, {"user": "alice"}, at=time.time() - 3600))
    page = client.get(f"/v2/{SPEC}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Logged in as <strong>alice</strong>" in text and 'href="/logout"' in text
    out = client.get("/logout")
    assert out.status_code == 302 and out.headers["Location"] == f"{hub_url}hub/logout"
    assert client.get_cookie(COOKIE_NAME) is None
    assert client.get(f"/v2/{SPEC}").status_code == 302


def test_the_callback_checks_the_state_once_and_in_time(auth_app: Flask) -> None:
    client = auth_app.test_client()
    assert client.get("/oauth_callback?code=c&state=s").status_code == 400  # nothing pending
    client.get(f"/v2/{SPEC}")
    state = session_of(auth_app, client)["oauth"]["state"]
    wrong = client.get(f"/oauth_callback?code=c&state={state[:-1]}{'x' if state[-1] != 'x' else 'y'}")
    assert wrong.status_code == 400 and "cannot be checked" in wrong.get_data(as_text=True)
    assert client.get_cookie(COOKIE_NAME) is None, "a failed check ends the pending log-in"
    assert client.get(f"/oauth_callback?code=c&state={state}").status_code == 400

    client.get(f"/v2/{SPEC}")
    state = session_of(auth_app, client)["oauth"]["state"]
    assert client.get(f"/oauth_callback?state={state}").status_code == 400  # no code

    client.get(f"/v2/{SPEC}")
    state = session_of(auth_app, client)["oauth"]["state"]
    denied = client.get(f"/oauth_callback?error=access_denied&state={state}")
    assert denied.status_code == 403 and "access_denied" in denied.get_data(as_text=True)

    client.get(f"/v2/{SPEC}")
    pending = session_of(auth_app, client)["oauth"]
    client.set_cookie(COOKIE_NAME, cookie(auth_app, {"oauth": {**pending, "at": time.time() - 601}}))
    late = client.get(f"/oauth_callback?code=c&state={pending['state']}")
    assert late.status_code == 400 and "too long" in late.get_data(as_text=True)


def test_a_right_state_with_a_hub_that_does_not_answer_is_a_502_page(auth_app: Flask) -> None:
    client = auth_app.test_client()
    client.get(f"/v2/{SPEC}")
    state = session_of(auth_app, client)["oauth"]["state"]
    answer = client.get(f"/oauth_callback?code=c&state={state}")
    assert answer.status_code == 502 and "did not answer" in answer.get_data(as_text=True)
    assert "t" * 32 not in answer.get_data(as_text=True)


@pytest.mark.parametrize("target, expected", [
    ("/v2/gh/a/b/HEAD?urlpath=lab", "/v2/gh/a/b/HEAD?urlpath=lab"),
    ("//evil.example/x", "/"), ("/\\evil.example", "/"), ("https://evil.example/", "/"),
    ("javascript:alert(1)", "/"), ("/ok\r\nSet-Cookie: x", "/"), (None, "/"), (["/"], "/"),
])
def test_the_page_to_return_to_is_always_on_this_site(target: Any, expected: str) -> None:
    assert safe_next(target) == expected


def test_auth_needs_the_jupyterhub_launcher_and_a_hub(redis_server: EmbeddedRedis) -> None:
    with pytest.raises(ConfigError, match="auth_enabled: needs launcher: jupyterhub"):
        create_app({"redis_url": redis_server.url, "auth_enabled": True})
    with pytest.raises(ConfigError, match="needs hub_url and hub_api_token"):
        create_app({"redis_url": redis_server.url, "auth_enabled": True, "launcher": "jupyterhub"})
    with pytest.raises(ConfigError, match="session_secret"):
        create_app({"redis_url": redis_server.url, "session_secret": "short"})


def test_without_session_secret_one_key_is_made_in_the_data_dir_and_kept(
        redis_server: EmbeddedRedis, hub_url: str, tmp_path: Path) -> None:
    settings = {"redis_url": redis_server.url, "launcher": "jupyterhub", "auth_enabled": True,
                "hub_url": hub_url, "hub_api_token": "t" * 32, "data_dir": str(tmp_path / "var")}
    first, second = create_app(settings), create_app(settings)
    key = (tmp_path / "var" / "session_secret").read_text().strip()
    assert first.secret_key == second.secret_key == key and len(key) >= 48
    assert stat.S_IMODE(os.stat(tmp_path / "var" / "session_secret").st_mode) == 0o600
    assert ensure_session_secret(tmp_path / "var") == key
    assert not [p for p in (tmp_path / "var").iterdir() if p.name.startswith(".")], "no draft left behind"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "session_secret").write_text("short\n")
    with pytest.raises(RuntimeError, match="no usable secret.*session_secret"):
        ensure_session_secret(tmp_path / "other")
