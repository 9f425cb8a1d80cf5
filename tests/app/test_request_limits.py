"""Maximum spec and URL length: a failed event on the build API, 414 everywhere else."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from app import create_app
from app.redis_server import EmbeddedRedis


@pytest.fixture
def app(redis_server: EmbeddedRedis) -> Flask:
    return create_app({"redis_url": redis_server.url, "launcher": "bench", "max_spec_length": 100,
                       "max_url_length": 400})


def _final(response: Any) -> dict[str, Any]:
    lines = [line for line in response.get_data(as_text=True).splitlines() if line.startswith("data:")]
    return dict(json.loads(lines[-1][5:]))


def test_a_long_spec_is_a_failed_event_naming_the_limit(client: Any) -> None:
    spec = "gh/org/" + "r" * 95 + "/HEAD"
    response = client.get(f"/build/{spec}", headers={"Accept": "text/event-stream"})
    assert response.status_code == 200
    final = _final(response)
    assert final["phase"] == "failed" and final["status_code"] == 414
    assert "at most 100" in final["message"] and "104 characters" in final["message"]
    shorter = client.get("/build/gh/" + "r" * 90, headers={"Accept": "text/event-stream"})
    assert _final(shorter)["status_code"] == 400, "within the limit the provider judges it"


def test_a_long_url_is_a_failed_event_on_the_build_api(client: Any) -> None:
    response = client.get("/build/gh/org/repo/HEAD?urlpath=" + "x" * 400, headers={"Accept": "text/event-stream"})
    final = _final(response)
    assert final["status_code"] == 414 and "at most 400" in final["message"]


def test_a_long_spec_on_the_loading_page_is_an_error_page(client: Any) -> None:
    response = client.get("/v2/gh/org/" + "r" * 120 + "/HEAD", headers={"Accept": "text/html"})
    assert response.status_code == 414 and "text/html" in response.content_type
    assert "accepts at most 100" in response.get_data(as_text=True)


@pytest.mark.parametrize(("path", "kind"), [
    ("/api/repoproviders?x=" + "y" * 400, "application/json"),
    ("/v2/gh/org/repo/HEAD?urlpath=" + "y" * 400, "text/html"),
    ("/no/such/page/" + "z" * 400, "text/html"),
])
def test_a_long_url_elsewhere_is_a_414(client: Any, path: str, kind: str) -> None:
    response = client.get(path, headers={"Accept": "text/html"})
    assert response.status_code == 414 and kind in response.content_type
    assert "at most 400" in response.get_data(as_text=True)
