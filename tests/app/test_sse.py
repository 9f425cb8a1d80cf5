"""Replayable event channels on a real Redis: replay, resume, live wake-up, keepalive."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from flask import Flask
from flask_sse import Message

from app import create_app
from app.extensions import events
from app.redis_server import EmbeddedRedis
from app.sse import KEEPALIVE, parse_event_id


def _app(redis_server: EmbeddedRedis, **settings: object) -> Flask:
    return create_app({"redis_url": redis_server.url, "launcher": "bench", **settings})


def test_late_reader_gets_every_event_and_stream_ends_on_terminal(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server)
    channel = uuid.uuid4().hex
    with app.app_context():
        for phase in ("waiting", "building", "ready"):
            events.publish({"phase": phase, "message": phase}, channel=channel)
        messages = [m for m in events.messages(channel) if isinstance(m, Message)]
    assert [m.data["phase"] for m in messages] == ["waiting", "building", "ready"]
    assert all(parse_event_id(m.id) and parse_event_id(m.id)[0] == channel for m in messages)


def test_resume_after_an_id_skips_what_was_seen(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server)
    channel = uuid.uuid4().hex
    with app.app_context():
        for n in range(5):
            events.publish({"phase": "building", "message": str(n)}, channel=channel)
        events.publish({"phase": "failed", "message": "x"}, channel=channel)
        first = [m for m in events.messages(channel) if isinstance(m, Message)]
        _, entry = parse_event_id(first[2].id)
        rest = [m for m in events.messages(channel, entry) if isinstance(m, Message)]
    assert [m.id for m in rest] == [m.id for m in first[3:]]


def test_live_events_wake_the_reader_and_keepalives_fill_silence(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server, keepalive_interval=0.2)
    channel = uuid.uuid4().hex

    def later() -> None:
        time.sleep(0.7)
        with app.app_context():
            events.publish({"phase": "ready", "message": "done"}, channel=channel)

    with app.app_context():
        events.publish({"phase": "waiting", "message": "w"}, channel=channel)
        thread = threading.Thread(target=later)
        started = time.monotonic()
        thread.start()
        seen = list(events.messages(channel))
        elapsed = time.monotonic() - started
        thread.join()
    assert seen.count(KEEPALIVE) >= 2
    assert isinstance(seen[-1], Message) and seen[-1].data["phase"] == "ready"
    assert elapsed < 2, "the published event must wake the reader, not the next poll"


def test_parse_event_id_refuses_foreign_ids() -> None:
    assert parse_event_id(None) is None
    assert parse_event_id("12") is None
    assert parse_event_id("../../etc_1-0") is None
    assert parse_event_id("a" * 32 + "_1700000000000-3") == ("a" * 32, "1700000000000-3")


def test_reconnect_after_the_terminal_event_ends_at_once(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server, keepalive_interval=5)
    channel = uuid.uuid4().hex
    with app.app_context():
        events.publish({"phase": "waiting", "message": "w"}, channel=channel)
        last = events.publish({"phase": "ready", "message": "r"}, channel=channel)
        started = time.monotonic()
        assert list(events.messages(channel, last)) == []
        assert time.monotonic() - started < 1


def test_expired_launch_ends_the_stream_with_failed(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server, keepalive_interval=0.1, stream_idle_timeout=1)
    channel = uuid.uuid4().hex
    with app.app_context():
        first = events.publish({"phase": "waiting", "message": "w"}, channel=channel)
        events.redis.delete(f"bindery:events:{channel}")  # what an expired TTL leaves
        seen = [m for m in events.messages(channel, first) if isinstance(m, Message)]
    assert seen[-1].data["phase"] == "failed" and seen[-1].data["status_code"] == 410


def test_quiet_stream_keepalives_cost_no_stream_reads(redis_server: EmbeddedRedis) -> None:
    """Keepalives come from the process, not from Redis: a stream nobody publishes to is not re-read."""
    app = _app(redis_server, keepalive_interval=0.05)
    channel = uuid.uuid4().hex

    def xranges() -> int:
        stats = app.extensions["bindery.redis"].info("commandstats")
        return int(stats.get("cmdstat_xrange", {}).get("calls", 0))

    with app.app_context():
        events.publish({"phase": "waiting", "message": "w"}, channel=channel)
        stream = events.messages(channel)
        assert isinstance(next(stream), Message)
        before = xranges()
        assert all(next(stream) == KEEPALIVE for _ in range(10))
        assert xranges() - before <= 1  # other tests' streams may share this Redis; 10 would mean one per keepalive
        events.publish({"phase": "ready", "message": "done"}, channel=channel)
        assert [m.data["phase"] for m in stream if isinstance(m, Message)] == ["ready"]


def test_redis_gone_for_good_ends_the_stream_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Redis away beyond redis_retry_seconds: the response ends (the client reconnects), no traceback."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    app = _app(server, keepalive_interval=0.2, redis_retry_seconds=0.5)
    channel = uuid.uuid4().hex
    with app.app_context():
        events.publish({"phase": "waiting", "message": "w"}, channel=channel)
    outcome: list[object] = []

    def read() -> None:
        with app.test_request_context():
            body = events.response(channel).response
            try:
                chunks = [next(body), next(body)]  # the first keepalive, then the waiting event
                server.stop()  # Redis goes away (and stays away)
                chunks.extend(body)
                outcome.append(chunks)
            except Exception as exc:  # what the test is looking for
                outcome.append(exc)

    try:
        thread = threading.Thread(target=read, daemon=True)
        with caplog.at_level("WARNING", logger="app.sse"):
            thread.start()
            thread.join(timeout=40)
        assert outcome and isinstance(outcome[0], list), f"the stream raised or hung: {outcome}"
        assert '"phase": "waiting"' in outcome[0][1]
        assert any("Redis unavailable" in record.getMessage() for record in caplog.records)
    finally:
        server.stop()


def test_opening_a_stream_marks_its_reader_and_replays_in_one_round_trip(redis_server: EmbeddedRedis) -> None:
    """What an open costs Redis: the reader mark and the first read go together (one pipeline)."""
    from app import keys

    app = _app(redis_server, abandon_timeout=60)
    channel = uuid.uuid4().hex
    with app.app_context():
        events.publish({"phase": "waiting", "message": "w"}, channel=channel)
        client = app.extensions["bindery.redis"]
        events._waiter("another")  # the process's listener (its own connection) is there before any stream
        time.sleep(0.2)
        sent: list[int] = []
        original = client.connection_pool.get_connection

        def counting(*args: object, **kwargs: object) -> object:
            sent.append(1)
            return original(*args, **kwargs)

        client.connection_pool.get_connection = counting
        try:
            stream = events.messages(channel)
            first = next(stream)
        finally:
            client.connection_pool.get_connection = original
        assert isinstance(first, Message) and first.data["phase"] == "waiting"
        assert client.get(keys.READER(channel)) is not None
        assert len(sent) == 1, "one connection checkout: reader mark and replay pipelined"
        stream.close()


def test_an_event_published_right_after_the_open_s_read_wakes_the_stream(
        redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream listens before its first read: an event landing just after that read is not lost."""
    app = _app(redis_server, keepalive_interval=0.05)
    channel = uuid.uuid4().hex
    original = type(events)._open

    def open_then_publish(self: object, channel: str, after: str) -> object:
        found = original(events, channel, after)
        events.publish({"phase": "ready", "message": "done"}, channel=channel)  # between read and the loop
        time.sleep(0.3)  # the listener has passed the wake-up on by now
        return found

    monkeypatch.setattr(type(events), "_open", open_then_publish)
    with app.app_context():
        events._waiter("another")  # listening already: its subscribe's wake-everyone must not hide the loss
        time.sleep(0.3)
        events.publish({"phase": "waiting", "message": "w"}, channel=channel)
        started = time.monotonic()
        phases = [m.data["phase"] for m in events.messages(channel) if isinstance(m, Message)]
    assert phases == ["waiting", "ready"]
    assert time.monotonic() - started < 2, "woken at once, not by the 30 s safety read"


def test_a_listener_whose_redis_is_gone_stops_when_no_stream_waits_and_the_next_stream_starts_another(
        tmp_path: Path) -> None:
    """No thread knocking for ever on a Redis that went away with nobody listening (an app in a test,
    a web worker idle through an outage); the next stream listens again."""
    server = EmbeddedRedis(tmp_path / "gone")
    server.start()
    # each attempt gives up after about 1.5 s of retries (the default rides out 10 s: a join
    # below would then race the retries on a busy machine)
    app = _app(server, redis_retry_seconds=1)
    channel = uuid.uuid4().hex
    with app.app_context():
        notifier, waiter = events._waiter(channel)
        server.stop()
        time.sleep(1.5)  # lost, but a stream waits: the listener keeps reconnecting
        assert notifier._thread.is_alive()
        notifier.unregister(channel, waiter)
        notifier._thread.join(timeout=20)  # its next attempt finds nobody waiting (about 2.5 s)
        assert not notifier._thread.is_alive() and notifier.register(channel) is None
        server.start()
        again, waiter = events._waiter(channel)
        assert again is not notifier and again._thread.is_alive()
        events.publish({"phase": "ready", "message": "done"}, channel=channel)
        assert waiter.wait(5), "the new listener wakes the stream"
        again.unregister(channel, waiter)
    server.stop()
