"""The warm pool's beat task is scheduled only where a pool is configured, and does nothing without one."""

from __future__ import annotations

from app.config import load_config
from celeryconfig import from_settings
from tests.conftest import LOOPBACK_ALLOWED


def _config(**settings: object) -> dict[str, object]:
    return load_config({**LOOPBACK_ALLOWED, **settings}, environ={})


def test_scheduled_with_a_pool_on_the_docker_launcher() -> None:
    schedule = from_settings(_config(warm_pool={"localhost/img:1": 2}, warm_pool_interval=3))["beat_schedule"]
    assert schedule["warm-pool"] == {"task": "bindery.warm_pool", "schedule": 3.0}
    assert "warm-pool" in from_settings(_config(warm_pool_top=2, launch_event_sinks=["redis"]))["beat_schedule"]


def test_not_scheduled_without_a_pool_or_with_jupyterhub() -> None:
    assert "warm-pool" not in from_settings(_config())["beat_schedule"]
    hub = _config(warm_pool={"localhost/img:1": 2}, launcher="jupyterhub", hub_url="http://127.0.0.1:8081/",
                 hub_api_token="x" * 32)
    assert "warm-pool" not in from_settings(hub)["beat_schedule"]
