"""Pages from the factory's app: loading page, about, badges, legacy links, 404s, queue position.

(The pages in a real browser are tested in tests/templates/.)
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from app import create_app
from app.redis_server import EmbeddedRedis
from tasks import timings


@pytest.fixture
def app(redis_server: EmbeddedRedis) -> Flask:
    return create_app({"redis_url": redis_server.url, "launcher": "bench", "about_message": "<b>Hi</b>"})


def test_static_assets_are_served_from_the_repository(client: Any) -> None:
    for path, kind in [("/static/js/loading.js", "javascript"), ("/static/css/bindery.css", "css"),
                       ("/static/img/favicon.svg", "svg")]:
        with client.get(path) as response:
            assert response.status_code == 200 and kind in response.content_type, path


def test_loading_page_carries_the_raw_spec(client: Any) -> None:
    response = client.get("/v2/git/https%3A%2F%2Fh.example%2Fr.git/main",
                          environ_overrides={"RAW_URI": "/v2/git/https%3A%2F%2Fh.example%2Fr.git/main"})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '"spec": "https%3A%2F%2Fh.example%2Fr.git/main"' in page
    assert "Starting <span id=\"repo-name\">https://h.example/r.git/main</span>" in page


def test_about_escapes_the_operator_message(client: Any) -> None:
    page = client.get("/about").get_data(as_text=True)
    assert "&lt;b&gt;Hi&lt;/b&gt;" in page and "<b>Hi</b>" not in page
    assert "2024.7.0" in page


@pytest.mark.parametrize("name", ["badge.svg", "badge_logo.svg"])
def test_badges(client: Any, name: str) -> None:
    with client.get(f"/{name}") as response:
        assert response.status_code == 200
        assert response.content_type.startswith("image/svg+xml")
        assert response.get_data(as_text=True).lstrip().startswith("<svg")
        assert response.cache_control.max_age == 86400


@pytest.mark.parametrize(("path", "target"), [
    ("/repo/org/project", "/v2/gh/org/project/HEAD"),
    ("/repo/org/project/", "/v2/gh/org/project/HEAD"),
    ("/repo/org/project/notebooks/a.ipynb", "/v2/gh/org/project/HEAD?urlpath=notebooks%2Fa.ipynb"),
])
def test_legacy_repo_links_redirect(client: Any, path: str, target: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"] == target


def test_browsers_get_a_404_page_and_api_paths_json(client: Any) -> None:
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    page = client.get("/no/such/page", headers=html)
    assert page.status_code == 404 and page.content_type.startswith("text/html")
    assert "Page not found" in page.get_data(as_text=True)
    for path in ("/api/nothing", "/build", "/health/x", "/versions/x", "/metrics/x"):
        response = client.get(path, headers=html)
        assert response.status_code in (404, 405), path
        assert response.is_json and response.json["status_code"] == response.status_code, path
    assert client.get("/no/such/page", headers={"Accept": "application/json"}).is_json


def test_position_of_a_launch(app: Flask, client: Any) -> None:
    from app import launches

    with app.test_request_context():
        launch_id = launches.start("gh", "org/slow-repo/HEAD", build_only=False, origin="http://x/")
        timings.record("build", "https://github.com/org/slow-repo", 120)
        timings.record("launch", "https://github.com/org/slow-repo", 6)
    response = client.get(f"/api/launches/{launch_id}/position")
    assert response.status_code == 200
    body = response.json
    assert body["queued"] is False and body["position"] is None
    assert body["estimate"]["build"] == {"seconds": 120.0, "samples": 1, "basis": "repository"}
    assert body["eta_seconds"] == 126.0
    assert response.headers["Cache-Control"] == "no-store"
    for bad in ("f" * 32, "not-a-launch", "../../etc"):
        missing = client.get(f"/api/launches/{bad}/position")
        assert missing.status_code == 404 and missing.is_json
