"""The cancel logic of abandoned launches and the launch-lease bookkeeping, on a real Redis.

Real: an embedded Redis, the app from its factory, Bindery's own event streams.
Nothing is mocked; the `bench` launcher (starts nothing) stands for the server
backend here; tests/system/test_abandon.py does the same with real containers.
"""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask_sse import Message

from app import create_app, keys
from app.config import load_config
from app.errors import ConfigError
from app.extensions import events, redis_client
from app.redis_server import EmbeddedRedis
from app.sse import KEEPALIVE
from celeryconfig import abandon_check_interval, from_settings
from tasks import launch_record, worker_lease
from tasks.beat import abandon
from tasks.lock import StartLine


def _app(redis_server: EmbeddedRedis, **settings: Any) -> Flask:
    return create_app({"redis_url": redis_server.url, "launcher": "bench", **settings})


def _launch(app: Flask, created: float, reader: float | None = None) -> str:
    """A launch on record as the web leaves it: its first event and its place in the active set."""
    launch_id = uuid.uuid4().hex
    client = redis_client.client
    client.set(f"bindery:launch:{launch_id}", "gh/org/repo/main", ex=600)
    events.publish({"phase": "waiting", "message": "w"}, channel=launch_id)
    client.zadd(keys.LAUNCHES_ACTIVE(), {launch_id: created})
    if reader is not None:
        client.set(keys.READER(launch_id), f"{reader:.3f}", ex=600)
    return launch_id


def _phases(launch_id: str) -> list[str]:
    return [event["phase"] for _, event in events.read(launch_id)]


def test_only_launches_unread_for_the_timeout_are_found(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server)
    now = time.time()
    with app.app_context():
        client = redis_client.client
        young = _launch(app, created=now - 2)
        never_read = _launch(app, created=now - 20)
        read_lately = _launch(app, created=now - 20, reader=now - 3)
        read_long_ago = _launch(app, created=now - 40, reader=now - 15)
        found = abandon.unwatched(client, now, timeout=10)
        assert never_read in found and read_long_ago in found
        assert young not in found and read_lately not in found
        # a watched launch is looked at again only once its last reader is timeout old
        assert client.zscore(keys.LAUNCHES_ACTIVE(), read_lately) == pytest.approx(now - 3, abs=0.01)
        assert client.zscore(keys.LAUNCHES_ACTIVE(), young) == pytest.approx(now - 2, abs=0.01)


def test_cancel_ends_the_launch_once_with_a_410_that_says_what_to_do(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server)
    with app.app_context():
        launch_id = _launch(app, created=time.time() - 30)
        assert abandon.cancel(launch_id, 10) is True
        assert abandon.cancel(launch_id, 10) is False, "a launch is cancelled once"
        final = events.read(launch_id)[-1][1]
        assert final["phase"] == "failed" and final["status_code"] == 410
        assert "Nobody was watching this launch for 10 s" in final["message"]
        assert "start a new launch" in final["message"] and "keeps running" in final["message"]
        assert _phases(launch_id).count("failed") == 1
        assert launch_record.ended(launch_id) == launch_record.CANCELLED
        assert redis_client.client.zscore(keys.LAUNCHES_ACTIVE(), launch_id) is None


def test_a_cancelled_launch_leaves_the_line_of_server_starts(redis_server: EmbeddedRedis) -> None:
    """Its place goes to the next launch at once, not when its own step next looks."""
    app = _app(redis_server)
    with app.app_context():
        line = StartLine(redis_client.client, "start")
        starting, next_one = (f"{name}-{uuid.uuid4().hex}" for name in ("starting", "next"))
        assert line.admit(starting, 1.0, 1)[0]
        launch_id = _launch(app, created=time.time() - 30)
        assert line.admit(launch_id, 2.0, 1) == (False, 0, 1)
        assert line.admit(next_one, 3.0, 1) == (False, 1, 1)
        assert abandon.cancel(launch_id, 10) is True
        assert line.admit(next_one, 3.0, 1) == (False, 0, 1), "one place up"
        line.leave(starting)
        assert line.admit(next_one, 3.0, 1)[0]
        line.leave(next_one)


def test_a_launch_that_ended_is_never_cancelled(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server)
    with app.app_context():
        finished = _launch(app, created=time.time() - 30)
        events.publish({"phase": "ready", "message": "r"}, channel=finished)
        claimed = _launch(app, created=time.time() - 30)  # its launch step is publishing ready
        assert launch_record.claim_end(claimed, "ready")
        expired = uuid.uuid4().hex  # its events are gone
        redis_client.client.zadd(keys.LAUNCHES_ACTIVE(), {expired: time.time() - 30})
        for launch_id in (finished, claimed, expired):
            assert abandon.cancel(launch_id, 10) is False
            assert redis_client.client.zscore(keys.LAUNCHES_ACTIVE(), launch_id) is None
        assert _phases(finished) == ["waiting", "ready"]
        assert _phases(claimed) == ["waiting"]


def test_the_beat_task_cancels_what_nobody_reads(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server, abandon_timeout=3, keepalive_interval=1)
    with app.app_context():
        gone = _launch(app, created=time.time() - 10)
        watched = _launch(app, created=time.time() - 10, reader=time.time())
        abandon.abandon_launches.run()
        assert _phases(gone)[-1] == "failed"
        assert _phases(watched) == ["waiting"]


def test_readers_mark_the_channel_at_open_then_every_quarter_of_the_timeout(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server, keepalive_interval=0.2, abandon_timeout=5)  # mark every 1.25 s
    channel = uuid.uuid4().hex
    with app.app_context():
        events.publish({"phase": "waiting", "message": "w"}, channel=channel)
        stream = events.messages(channel)
        assert isinstance(next(stream), Message)
        opened = float(redis_client.client.get(keys.READER(channel)))
        assert opened == pytest.approx(time.time(), abs=1)
        assert next(stream) == KEEPALIVE
        assert float(redis_client.client.get(keys.READER(channel))) == opened  # not at every keepalive
        started = time.monotonic()
        while time.monotonic() - started < 1.5:
            assert next(stream) == KEEPALIVE
        assert float(redis_client.client.get(keys.READER(channel))) > opened
        assert 0 < redis_client.client.ttl(keys.READER(channel)) <= 11
        stream.close()


def test_no_reader_marks_when_abandoning_is_off(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server, keepalive_interval=0.1, abandon_timeout=0)
    channel = uuid.uuid4().hex
    with app.app_context():
        events.publish({"phase": "waiting", "message": "w"}, channel=channel)
        stream = events.messages(channel)
        next(stream)
        assert next(stream) == KEEPALIVE
        stream.close()
        assert redis_client.client.get(keys.READER(channel)) is None
    assert "abandon-launches" not in from_settings(app.config["BINDERY"])["beat_schedule"]


def test_web_records_each_launch_as_active(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server)
    response = app.test_client().get("/build/gh/org/repo/main", headers={"Accept": "text/event-stream"},
                                     buffered=False)
    try:
        body = next(response.response) + next(response.response)
    finally:
        response.close()
    launch_id = body.split(b"id:")[1].split(b"_")[0].decode()
    with app.app_context():
        assert redis_client.client.zscore(keys.LAUNCHES_ACTIVE(), launch_id) == pytest.approx(time.time(), abs=5)


def test_settings_refuse_a_timeout_a_connected_reader_could_miss() -> None:
    with pytest.raises(ConfigError, match="abandon_timeout: must be 0 .never. or more than twice"):
        load_config({"abandon_timeout": 40, "keepalive_interval": 25}, environ={})
    assert load_config({"abandon_timeout": 0, "keepalive_interval": 25}, environ={})["abandon_timeout"] == 0
    assert abandon_check_interval(60) == 10 and abandon_check_interval(5) == 1


# --- launch worker crashes ----------------------------------------------------------------------

def _payload(launch_id: str) -> dict[str, Any]:
    return {"id": launch_id, "provider": "gh", "spec": "org/repo/main", "created": time.time()}


def _request(redelivered: bool) -> SimpleNamespace:
    return SimpleNamespace(delivery_info={"redelivered": redelivered})


def test_steps_of_an_ended_launch_do_not_run(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server)
    with app.app_context():
        launch_id = _launch(app, created=time.time())
        assert worker_lease.may_run(_request(False), _payload(launch_id))
        launch_record.claim_end(launch_id, launch_record.CANCELLED)
        assert not worker_lease.may_run(_request(False), _payload(launch_id))
        assert not worker_lease.may_run(_request(True), _payload(launch_id))


def test_a_redelivered_launch_is_retried_then_failed_clearly(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server, launch_crash_retries=2)
    with app.app_context():
        launch_id = _launch(app, created=time.time())
        assert worker_lease.may_run(_request(True), _payload(launch_id))
        assert worker_lease.may_run(_request(True), _payload(launch_id))
        notices = [e["message"] for _, e in events.read(launch_id) if "retrying" in e.get("message", "")]
        assert notices == ["The worker running this launch stopped; retrying (retry 1 of 2)...\n",
                           "The worker running this launch stopped; retrying (retry 2 of 2)...\n"]
        assert not worker_lease.may_run(_request(True), _payload(launch_id))
        final = events.read(launch_id)[-1][1]
        assert final["phase"] == "failed" and final["status_code"] == 503
        assert "stopped unexpectedly (delivered 4 times)" in final["message"]
        assert launch_record.ended(launch_id) == "failed"


def test_only_a_launch_only_worker_gets_the_short_lease() -> None:
    assert worker_lease.launch_only(["launch"]) and worker_lease.launch_only("launch")
    assert not worker_lease.launch_only(["launch", "build"]) and not worker_lease.launch_only("build")
    assert not worker_lease.launch_only(None)
    options = worker_lease.transport_options({"launch_visibility_timeout": 30})
    assert options["visibility_timeout"] == 30 and options["unacked_key"] != "unacked"


def test_renewing_touches_only_messages_still_unacked(redis_server: EmbeddedRedis) -> None:
    app = _app(redis_server)
    with app.app_context():
        client = redis_client.client
        held, acked = uuid.uuid4().hex, uuid.uuid4().hex
        client.zadd(worker_lease.UNACKED_INDEX_KEY, {held: 1000.0})
        assert worker_lease.renew(client, [held, acked], now=5000.0) == 1
        assert client.zscore(worker_lease.UNACKED_INDEX_KEY, held) == 5000.0
        assert client.zscore(worker_lease.UNACKED_INDEX_KEY, acked) is None, "an acked message stays acked"
        client.zrem(worker_lease.UNACKED_INDEX_KEY, held)


def test_a_cancelled_launch_stops_following_the_build(redis_server: EmbeddedRedis,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody watches it any more: it stops relaying someone else's build (which goes on)."""
    import threading

    from app.keys import build_channel
    from tasks.lock import BuildLock
    from tasks.steps import attach

    monkeypatch.setattr(attach, "END_CHECK_SECONDS", 0.2)
    app = _app(redis_server)
    with app.app_context():
        launch_id = _launch(app, created=time.time())
        build_id = uuid.uuid4().hex
        image = f"127.0.0.1:5055/bindery-test-cancel:{build_id}"
        assert BuildLock(redis_client.client, image).acquire(build_id, 600)  # a build that runs on
        events.publish({"phase": "building", "message": "step 1\n"}, channel=build_channel(build_id))
        assert launch_record.claim_end(launch_id, launch_record.CANCELLED)
    outcome: list[float] = []

    def follow() -> None:
        with app.app_context():
            started = time.monotonic()
            attach.attach.run({"id": launch_id, "build_id": build_id, "image": image})
            outcome.append(time.monotonic() - started)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    thread.join(timeout=15)
    assert outcome, "the cancelled launch kept following the build"
    with app.app_context():
        assert _phases(launch_id) == ["waiting", "building"]  # nothing after the end


def test_an_attach_delivered_again_relays_each_build_event_once(redis_server: EmbeddedRedis) -> None:
    """Its launch worker was killed mid-relay: the new delivery carries on where the last stopped."""
    from app.keys import build_channel
    from tasks.steps import attach

    app = _app(redis_server, launch_last_good_image=False)
    with app.app_context():
        launch_id = _launch(app, created=time.time())
        build_id = uuid.uuid4().hex
        source = build_channel(build_id)
        ids = [events.publish({"phase": "building", "message": f"step {n}\n"}, channel=source) for n in (1, 2)]
        for n, entry_id in zip((1, 2), ids, strict=True):  # what the killed delivery had relayed
            events.publish({"phase": "building", "message": f"step {n}\n"}, channel=launch_id,
                           source=f"{build_id}/{entry_id}")
        events.publish({"phase": "building", "message": "step 3\n"}, channel=source)
        events.publish({"phase": "failed", "message": "the build failed\n"}, channel=source)
        launch = {"id": launch_id, "build_id": build_id, "image": "127.0.0.1:5055/x:1", "provider": "git",
                  "spec": "x/main", "created": time.time()}
        attach.attach.run(launch)
        relayed = [event["message"] for _, event in events.read(launch_id)][1:]
        assert relayed == ["step 1\n", "step 2\n", "step 3\n", "the build failed\n"]
        assert "source" not in next(events.messages(launch_id)).data  # kept beside the event, not in it
