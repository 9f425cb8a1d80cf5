"""The proxy's reconcile beat task: scheduled only with a proxy; gives a CHP the routes it lost."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from app import create_app, keys
from app.config import load_config
from app.redis_server import EmbeddedRedis
from celeryconfig import from_settings
from tasks.backends import proxy_routes
from tasks.beat.proxy_routes import reconcile_proxy_routes
from tests.chp import Chp
from tests.conftest import LOOPBACK_ALLOWED


def test_scheduled_only_with_a_proxy() -> None:
    with_proxy = load_config({**LOOPBACK_ALLOWED, "proxy_api_url": "http://127.0.0.1:8001",
                              "proxy_auth_token": "t"}, environ={})
    assert from_settings(with_proxy)["beat_schedule"]["reconcile-proxy-routes"]["task"] == \
        "bindery.reconcile_proxy_routes"
    assert "reconcile-proxy-routes" not in from_settings(load_config(LOOPBACK_ALLOWED, environ={}))["beat_schedule"]


def test_a_route_whose_post_was_lost_is_added_and_nothing_happens_without_a_proxy(
        redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    chp = Chp(tmp_path / "chp").start()
    try:
        app: Flask = create_app({"redis_url": redis_server.url, "launcher": "bench", "proxy_api_url": chp.api_url,
                                 "proxy_auth_token": chp.token})
        with app.app_context():
            client = app.extensions["bindery.redis"]
            client.hset(keys.PROXY_ROUTES(), "lost", "http://127.0.0.1:19999")  # recorded, never sent
            try:
                assert reconcile_proxy_routes.run() == 1
                assert chp.api().routes()["/user/lost"] == "http://127.0.0.1:19999"
                assert reconcile_proxy_routes.run() == 0
            finally:
                proxy_routes.remove(client, chp.api(), "lost")
        chp.stop()
        with app.app_context():
            assert reconcile_proxy_routes.run() == 0, "CHP away: logged, nothing raised"
        with create_app({"redis_url": redis_server.url, "launcher": "bench"}).app_context():
            assert reconcile_proxy_routes.run() == 0
    finally:
        chp.stop()
