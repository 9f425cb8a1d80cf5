"""Persistent build logs: a log is capped with a notice (the log served after a failed build and its
retention are shown end to end in tests/system/test_build_logs.py)."""

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
