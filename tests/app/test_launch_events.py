"""Launch events: BinderHub's launch schema, the sinks, and `bindery events`."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from marshmallow import ValidationError

from app.config import load_config
from app.launch_events import REDIS_STREAM, LaunchEventSchema, count_launches, emit, make_event
from app.redis_server import EmbeddedRedis
from tests.stack import ROOT

LAUNCH = {"id": "a" * 32, "provider": "gh", "spec": "org/repo/HEAD", "resolved_ref": "b" * 40,
          "origin": "http://127.0.0.1:8585/", "created": 0.0}


def test_event_has_binderhub_launch_schema_fields() -> None:
    event = make_event(LAUNCH, "success")
    assert event["schema"] == "binderhub.jupyter.org/launch" and event["version"] == 6
    assert event["provider"] == "GitHub" and event["spec"] == "org/repo/HEAD"
    assert event["ref"] == "b" * 40 and event["status"] == "success" and event["origin"] == "127.0.0.1:8585"
    datetime.datetime.fromisoformat(event["timestamp"])


def test_schema_refuses_bad_events() -> None:
    event = make_event(LAUNCH, "success")
    for bad in ({"status": "maybe"}, {"provider": "Nowhere"}, {"version": 2}):
        with pytest.raises(ValidationError):
            LaunchEventSchema().load({**event, **bad})


def test_sinks_write_file_stdout_and_redis(tmp_path: Path, redis_server: EmbeddedRedis,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config({"data_dir": str(tmp_path), "launch_event_sinks": ["file", "stdout", "redis"]},
                         environ={})
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    before = client.xlen(REDIS_STREAM)
    event = make_event(LAUNCH, "success")
    emit(config, event, client)
    assert json.loads((tmp_path / "launch-events.jsonl").read_text()) == event
    assert json.loads(capsys.readouterr().out) == event
    assert client.xlen(REDIS_STREAM) == before + 1


def test_count_launches_by_repo_and_days() -> None:
    now = datetime.datetime(2026, 11, 22, tzinfo=datetime.UTC)

    def at(days_ago: float, spec: str = "org/repo/HEAD", status: str = "success") -> dict[str, str]:
        return {**make_event({**LAUNCH, "spec": spec}, status),
                "timestamp": (now - datetime.timedelta(days=days_ago)).isoformat()}

    events = [at(1), at(2, "org/repo/main"), at(40), at(1, status="failure"), at(1, "org/other/HEAD")]
    assert count_launches(events, "gh/org/repo", 30, now) == 2
    assert count_launches(events, "gh/org/repo", 60, now) == 3
    assert count_launches(events, "gh/org", 30, now) == 3


def test_bindery_events_command_counts_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(make_event(LAUNCH, "success")) + "\n" for _ in range(3)))
    out = subprocess.run([sys.executable, "-m", "app.cli", "events", "gh/org/repo", "--days", "7",
                          "--file", str(path)], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "3 launches of gh/org/repo in the last 7 days"
    missing = subprocess.run([sys.executable, "-m", "app.cli", "events", "gh/x", "--file", str(tmp_path / "no")],
                             cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 2 and "No such file" in missing.stderr and "Traceback" not in missing.stderr
