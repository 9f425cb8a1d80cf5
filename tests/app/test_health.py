"""/health against real dependencies: a real registry stopped and started again, the real engine,
workers' heartbeats in a real Redis."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from app import create_app, keys
from app.redis_server import EmbeddedRedis, free_port
from tasks import worker_heartbeat
from tests.stack import LocalRegistry

pytestmark = [pytest.mark.integration, pytest.mark.engine]


def test_health_turns_503_when_the_registry_stops_and_recovers(
        tmp_path: Path, redis_server: EmbeddedRedis, docker_host: str) -> None:
    registry = LocalRegistry(tmp_path / "registry", free_port()).start()
    app = create_app({"redis_url": redis_server.url, "docker_host": docker_host,
                      "registry_url": registry.url, "health_cache_seconds": 0})
    client = app.test_client()
    redis.Redis.from_url(redis_server.url).delete(keys.OUTAGE("gh"))  # no GitHub outage marked
    worker_heartbeat.beat(redis.Redis.from_url(redis_server.url), ["build", "launch"], "health-test@host")
    try:
        healthy = client.get("/health")
        assert healthy.status_code == 200, healthy.json
        services = {check["service"]: check for check in healthy.json["checks"]}
        # GitHub is asked only after a resolve failed to reach it (tests/app/test_outages.py)
        assert set(services) == {"Redis", "Registry", "Launcher", "Server quota", "Build worker",
                                 "Launch worker", "GitHub API", "User code network"}
        assert services["User code network"] == {"service": "User code network", "ok": True,
                                                 "launch": "isolated", "build": "isolated"}
        assert all(check["ok"] for check in services.values())
        assert isinstance(services["Server quota"]["servers"], int)

        registry.stop()
        down = client.get("/health")
        assert down.status_code == 503
        assert [c["ok"] for c in down.json["checks"] if c["service"] == "Registry"] == [False]
        assert down.json["ok"] is False

        registry.start()
        assert client.get("/health").status_code == 200, "recovers without restarting Bindery"
    finally:
        registry.stop()


def test_health_is_cached_so_probes_do_not_hammer_dependencies(
        tmp_path: Path, redis_server: EmbeddedRedis, docker_host: str) -> None:
    registry = LocalRegistry(tmp_path / "registry", free_port()).start()
    app = create_app({"redis_url": redis_server.url, "docker_host": docker_host,
                      "registry_url": registry.url, "health_cache_seconds": 60})
    client = app.test_client()
    from app import health

    health._cache["result"] = None
    worker_heartbeat.beat(redis.Redis.from_url(redis_server.url), ["build", "launch"], "health-test@host")
    try:
        assert client.get("/health").status_code == 200
        registry.stop()
        assert client.get("/health").status_code == 200, "the cached result is served for 60 s"
    finally:
        health._cache["result"] = None
        registry.stop()


def test_versions_is_open_to_other_origins(redis_server: EmbeddedRedis) -> None:
    client = create_app({"redis_url": redis_server.url, "launcher": "bench"}).test_client()
    response = client.get("/versions")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.json["builder"] == "repo2docker 2024.7.0"


def test_a_worker_that_is_gone_makes_health_503_with_its_check_named(tmp_path: Path, docker_host: str) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()  # a Redis of its own: no other test's heartbeats
    try:
        client = create_app({"redis_url": server.url, "docker_host": docker_host, "launcher": "bench",
                             "enabled_providers": ["git"], "health_cache_seconds": 0}).test_client()
        store = redis.Redis.from_url(server.url)

        def failing() -> list[str]:
            response = client.get("/health")
            failed = [c["service"] for c in response.json["checks"] if not c["ok"]]
            assert (response.status_code == 503) == bool(failed), response.json
            return failed

        assert failing() == ["Build worker", "Launch worker"], "no worker has ever beaten"
        worker_heartbeat.beat(store, ["launch"], "launch@host")
        assert failing() == ["Build worker"]
        worker_heartbeat.beat(store, ["build"], "build@host")
        assert failing() == []
        assert client.get("/versions").status_code == 200

        # the build worker stops beating (killed): once its last beat is too old, /health says so
        worker_heartbeat.beat(store, ["build"], "build@host", now=time.time() - worker_heartbeat.MAX_AGE - 1)
        assert failing() == ["Build worker"]
        assert client.get("/versions").status_code == 200, "/versions (the chart's probe) stays 200"
        worker_heartbeat.beat(store, ["build"], "build@host")
        worker_heartbeat.forget(store, ["launch"], "launch@host")  # a clean shutdown says so at once
        assert failing() == ["Launch worker"]
    finally:
        server.stop()


def test_checks_run_at_once_so_a_slow_dependency_costs_only_its_own_time(
        redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two checks that each wait for the other: they pass only if they run at the same time."""
    import threading

    from app import health

    both = threading.Barrier(2, timeout=10)

    def waits_for_the_other(queue: str) -> dict[str, object]:
        both.wait()
        return {"workers": 1, "ok": True}

    monkeypatch.setattr(health, "_workers", waits_for_the_other)
    app = create_app({"redis_url": redis_server.url, "launcher": "bench"})
    with app.app_context():
        checks = {check["service"]: check for check in health.run_checks()["checks"]}
    assert checks["Build worker"]["ok"] and checks["Launch worker"]["ok"], checks
    assert checks["Redis"]["ok"], "each check runs inside the app's context"


def test_host_networking_is_warned_about_without_failing_health(
        redis_server: EmbeddedRedis, docker_host: str) -> None:
    app = create_app({"redis_url": redis_server.url, "docker_host": docker_host, "health_cache_seconds": 0,
                      "launch_network": "host", "build_network": "host"})
    worker_heartbeat.beat(redis.Redis.from_url(redis_server.url), ["build", "launch"], "health-test@host")
    from app import health

    health._cache["result"] = None
    try:
        answer = app.test_client().get("/health").json
    finally:
        health._cache["result"] = None
    (check,) = [c for c in answer["checks"] if c["service"] == "User code network"]
    assert check["ok"] is True and (check["launch"], check["build"]) == ("host", "host")
    assert any("launch_network is `host`" in w and "Redis" in w for w in check["warnings"]), check
    assert any("build_network is `host`" in w for w in check["warnings"]), check
