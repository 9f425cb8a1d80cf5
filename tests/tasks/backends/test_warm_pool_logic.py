"""The warm pool's choice of images, over real Redis: configured images and specs, the top-N specs
of the launch events, a spec following its latest launch, caps, forgetting specs nobody launches."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis as redis_lib

from app import keys
from app.config import load_config
from app.errors import ConfigError
from app.launch_events import REDIS_STREAM
from app.redis_server import EmbeddedRedis
from tasks.backends import warm_pool
from tests.conftest import LOOPBACK_ALLOWED


@pytest.fixture
def store(redis_server: EmbeddedRedis) -> Any:
    client = redis_lib.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    return client


def _config(**settings: Any) -> dict[str, Any]:
    return load_config({**LOOPBACK_ALLOWED, "launch_event_sinks": ["redis"], **settings}, environ={})


def _event(store: Any, provider: str, spec: str, status: str = "success") -> None:
    store.xadd(REDIS_STREAM, {"event": json.dumps({"provider": provider, "spec": spec, "status": status})})


def test_top_specs_count_successful_launches_of_the_last_hours(store: Any) -> None:
    for _ in range(3):
        _event(store, "GitHub", "org/popular/main")
    for _ in range(2):
        _event(store, "Git", "https%3A%2F%2Fexample.org%2Fr.git/main")
    _event(store, "GitHub", "org/rare/main")
    for _ in range(5):
        _event(store, "GitHub", "org/broken/main", status="failure")
    config = _config(warm_pool_top=2)
    assert warm_pool.top_specs(config, store) == ["gh/org/popular/main", "git/https%3A%2F%2Fexample.org%2Fr.git/main"]
    assert warm_pool.top_specs(config, store, now=time.time() + 7 * 3600) == []  # older than warm_pool_top_hours
    assert warm_pool.top_specs(_config(), store) == []


def test_a_spec_is_pooled_once_launched_and_follows_its_latest_image(store: Any) -> None:
    config = _config(warm_pool={"gh/org/course/main": 3, "localhost/img:1": 1, "gh/org/off/main": 0})
    assert warm_pool.wanted(config, store) == {"localhost/img:1": (1, {
        "image": "localhost/img:1", "repo_url": "localhost/img:1", "resolved_ref": "1"})}
    launch = {"provider": "gh", "spec": "org/course/main", "image": "reg/course:aaa",
              "repo_url": "https://github.com/org/course", "resolved_ref": "aaa"}
    warm_pool.note_launch(config, store, launch)
    assert warm_pool.wanted(config, store)["reg/course:aaa"][0] == 3
    warm_pool.note_launch(config, store, {**launch, "image": "reg/course:bbb", "resolved_ref": "bbb"})
    assert set(warm_pool.wanted(config, store)) == {"reg/course:bbb", "localhost/img:1"}
    warm_pool.note_launch(config, store, {**launch, "spec": "org/other/main", "image": "reg/other:1"})
    assert "reg/other:1" not in warm_pool.wanted(config, store)  # not configured, no top-N: not noted


def test_a_push_s_build_is_not_a_launch_for_the_top_specs(store: Any) -> None:
    for _ in range(3):
        store.xadd(REDIS_STREAM, {"event": json.dumps({"provider": "GitHub", "spec": "org/pushed/main",
                                                       "status": "success", "trigger": "push"})})
    _event(store, "GitHub", "org/clicked/main")
    assert warm_pool.top_specs(_config(warm_pool_top=2), store) == ["gh/org/clicked/main"]


def test_top_specs_are_pooled_and_forgotten_when_nobody_launches_them(store: Any) -> None:
    config = _config(warm_pool_top=1, warm_pool_top_size=2)
    launch = {"provider": "gh", "spec": "org/hot/main", "image": "reg/hot:1",
              "repo_url": "https://github.com/org/hot", "resolved_ref": "1"}
    warm_pool.note_launch(config, store, launch)
    _event(store, "GitHub", "org/hot/main")
    assert warm_pool.wanted(config, store) == {"reg/hot:1": (2, {**launch_target(store, "gh/org/hot/main")})}
    old = json.loads(store.hget(keys.POOL_TARGETS(), "gh/org/hot/main"))
    store.hset(keys.POOL_TARGETS(), "gh/org/hot/main", json.dumps({**old, "at": time.time() - 7 * 3600}))
    warm_pool._prune_targets(config, store)
    assert store.hget(keys.POOL_TARGETS(), "gh/org/hot/main") is None


def launch_target(store: Any, name: str) -> dict[str, Any]:
    return json.loads(store.hget(keys.POOL_TARGETS(), name))


def test_caps_and_settings() -> None:
    assert warm_pool.capacity(_config(warm_pool_max_servers=10)) == 10
    assert warm_pool.capacity(_config(warm_pool_max_servers=10, warm_pool_max_memory_mb=1000,
                                      warm_pool_server_memory_mb=300)) == 3
    assert warm_pool.is_spec(_config(), "gh/org/repo/main")
    assert not warm_pool.is_spec(_config(), "quay.io/jupyter/base-notebook:2024-07-08")
    with pytest.raises(ConfigError, match="warm_pool_top"):
        load_config({**LOOPBACK_ALLOWED, "warm_pool_top": 2, "launch_event_sinks": ["file"]}, environ={})
