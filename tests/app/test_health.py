"""/health against real dependencies: a real registry stopped and started again, the real engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from app import create_app, keys
from app.redis_server import EmbeddedRedis, free_port
from tests.stack import LocalRegistry

pytestmark = [pytest.mark.integration, pytest.mark.engine]


def test_health_turns_503_when_the_registry_stops_and_recovers(
        tmp_path: Path, redis_server: EmbeddedRedis, docker_host: str) -> None:
    registry = LocalRegistry(tmp_path / "registry", free_port()).start()
    app = create_app({"redis_url": redis_server.url, "docker_host": docker_host,
                      "registry_url": registry.url, "health_cache_seconds": 0})
    client = app.test_client()
    redis.Redis.from_url(redis_server.url).delete(keys.OUTAGE("gh"))  # no GitHub outage marked
    try:
        healthy = client.get("/health")
        assert healthy.status_code == 200, healthy.json
        services = {check["service"]: check for check in healthy.json["checks"]}
        # GitHub is asked only after a resolve failed to reach it (tests/app/test_outages.py)
        assert set(services) == {"Redis", "Registry", "Launcher", "Server quota", "GitHub API"}
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
