"""tasks/backends/proxy_routes.py against a real configurable-http-proxy on 127.0.0.1 (stopped by pid)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import requests

from app import keys
from app.redis_server import EmbeddedRedis
from tasks.backends import proxy_routes
from tests.chp import Chp


class _Echo(http.server.BaseHTTPRequestHandler):
    """A stand-in server: answers with the path it was asked for (CHP keeps /user/<id>/)."""

    def do_GET(self) -> None:
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def chp(tmp_path: Path) -> Iterator[Chp]:
    proxy = Chp(tmp_path / "chp").start()
    yield proxy
    proxy.stop()


@pytest.fixture
def redis(redis_server: EmbeddedRedis) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(redis_server.url, decode_responses=True)
    client.delete(keys.PROXY_ROUTES())
    yield client
    client.delete(keys.PROXY_ROUTES())


def test_a_route_reaches_its_server_with_the_path_kept_and_goes_on_remove(chp: Chp, redis: Any,
                                                                            server: str) -> None:
    api = chp.api()
    proxy_routes.add(redis, api, "abc123", server)
    assert api.routes()["/user/abc123"] == server
    assert redis.hgetall(keys.PROXY_ROUTES()) == {"abc123": server}
    assert requests.get(f"{chp.url}/user/abc123/lab?x=1", timeout=5).text == "/user/abc123/lab?x=1"

    proxy_routes.remove(redis, api, "abc123")
    assert "/user/abc123" not in api.routes()
    assert not redis.hgetall(keys.PROXY_ROUTES())
    proxy_routes.remove(redis, api, "abc123")  # twice: already gone is fine


def test_reconcile_rebuilds_the_routes_after_a_restart_and_drops_extra_ones(chp: Chp, redis: Any,
                                                                            server: str) -> None:
    api = chp.api()
    proxy_routes.add(redis, api, "one", server)
    proxy_routes.add(redis, api, "two", server)
    chp.stop()
    chp.start()  # a new CHP knows nothing
    assert not [path for path in api.routes() if path.startswith("/user/")]
    api.add("/user/stale", server)  # a route nobody recorded (its server went while CHP was away)
    api.add("/elsewhere", server)  # not ours: left alone

    assert proxy_routes.reconcile(redis, api) == (2, 1)
    routes = api.routes()
    assert {path for path in routes if path.startswith("/user/")} == {"/user/one", "/user/two"}
    assert routes["/elsewhere"] == server
    assert requests.get(f"{chp.url}/user/two/api", timeout=5).text == "/user/two/api"
    assert proxy_routes.reconcile(redis, api) == (0, 0)


def test_a_proxy_that_is_away_does_not_fail_the_launch_and_reconcile_catches_up(chp: Chp, redis: Any,
                                                                               server: str) -> None:
    chp.stop()
    api = chp.api()
    proxy_routes.add(redis, api, "later", server)  # recorded; CHP's call failed and was logged
    chp.start()
    assert proxy_routes.reconcile(redis, api) == (1, 0)
    assert api.routes()["/user/later"] == server


def test_the_api_refuses_a_wrong_token(chp: Chp) -> None:
    with pytest.raises(requests.HTTPError):
        proxy_routes.ProxyAPI(chp.api_url, "wrong").routes()


def test_no_proxy_without_an_api_url() -> None:
    assert proxy_routes.from_config({"proxy_api_url": None, "proxy_auth_token": None}) is None
    api = proxy_routes.from_config({"proxy_api_url": "http://127.0.0.1:1/", "proxy_auth_token": "t"})
    assert api is not None and api.url == "http://127.0.0.1:1"
