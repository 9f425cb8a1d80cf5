"""Persistent build logs: a log is capped with a notice and outlives a long build (the log served
after a failed build and its retention are shown end to end in tests/system/test_build_logs.py)."""

from __future__ import annotations

import redis

from app.build_log_store import TRUNCATED, BuildLog, read
from app.config import load_config
from app.redis_server import EmbeddedRedis


def test_log_is_capped_with_a_notice(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    config = load_config({"build_log_max_bytes": 1024}, environ={})
    log = BuildLog(client, "/logs/git/x/" + "a" * 40, config)
    log.start(repo_url="http://127.0.0.1:1/x.git", ref="a" * 40)
    for n in range(100):
        log.append(f"line {n:03d} " + "x" * 20 + "\n")
    log.finish("failed")
    meta, text = read(client, "/logs/git/x/" + "a" * 40) or ({}, "")
    assert meta["status"] == "failed"
    assert text.startswith("line 000") and text.endswith(TRUNCATED)
    assert len(text.encode()) <= 1024 + len(TRUNCATED)


def test_a_build_longer_than_the_retention_keeps_its_record(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    log = BuildLog(client, "/logs/git/y/" + "b" * 40, load_config({"build_log_retention": 60}, environ={}))
    log.start(repo_url="http://127.0.0.1:1/y.git", ref="b" * 40)
    client.expire(log.meta_key, 1)  # the build has run almost as long as the retention
    log.append("still building\n")
    assert client.ttl(log.meta_key) > 50 and client.ttl(log.log_key) > 50
    log.finish("built")
    meta, text = read(client, "/logs/git/y/" + "b" * 40) or ({}, "")
    assert meta["repo_url"] == "http://127.0.0.1:1/y.git" and text == "still building\n"
