"""The app served on loopback for the page tests, and how Chromium runs (its ``browser`` and ``page``
fixtures are in tests/conftest.py: one Chromium per worker, shared with tests/system/)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from app import create_app
from app.redis_server import EmbeddedRedis

CHROMIUM = "/usr/bin/chromium"
# Nothing leaves loopback (thebe in tests/system/test_cross_origin.py would fetch MathJax or require.js
# from CDNs only for output that needs them): names do not resolve.  Not Playwright's request routing:
# with it, Chromium lets Playwright answer CORS preflights itself, and those tests are about who answers.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
VIEWPORT = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Flask app from its factory, served by a threaded WSGI server on 127.0.0.1."""
    redis = EmbeddedRedis(tmp_path_factory.mktemp("pages-redis")).start()
    app = create_app({"redis_url": redis.url, "launcher": "bench",
                      "about_message": "Maintenance on Sunday.\nBe kind.",
                      "webhook_secret": "page-test-webhook-secret", "prebuild_tokens": {"ci": "p" * 32}})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)
    redis.stop()


def screenshot(page: Any, name: str, size: dict[str, int] = VIEWPORT) -> Path:
    """Save a PNG under test-artifacts/ and check it is a real image of the viewport's size."""
    import struct

    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "a PNG file"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (size["width"], size["height"]), (width, height)
    assert len(data) > 5000, "not an empty image"
    return path
