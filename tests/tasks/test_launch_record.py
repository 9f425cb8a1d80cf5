"""The launch record: the web opens it, a reconnecting client is matched to it, a launch ends once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask

from app import create_app, keys
from app.extensions import events, redis_client
from app.redis_server import EmbeddedRedis
from tasks import launch_record


@pytest.fixture
def app(redis_server: EmbeddedRedis) -> Iterator[Flask]:
    app = create_app({"redis_url": redis_server.url, "launcher": "bench", "event_ttl": 600, "abandon_timeout": 60})
    with app.app_context():
        yield app


def test_opening_records_the_request_and_that_it_runs(app: Flask) -> None:
    launch_id = uuid.uuid4().hex
    created = time.time()
    launch_record.open_record({"id": launch_id, "provider": "gh", "spec": "org/repo/HEAD", "created": created})
    client = redis_client.client
    assert client.get(keys.LAUNCH_REQUEST(launch_id)) == "gh/org/repo/HEAD"
    assert 590 < client.ttl(keys.LAUNCH_REQUEST(launch_id)) <= 600
    assert client.zscore(keys.LAUNCHES_ACTIVE(), launch_id) == pytest.approx(created)
    assert launch_record.request_of(launch_id) == "gh/org/repo/HEAD"
    assert launch_record.request_of(uuid.uuid4().hex) is None


def test_without_the_abandon_sweep_nothing_is_tracked_as_running(app: Flask) -> None:
    app.config["BINDERY"] = {**app.config["BINDERY"], "abandon_timeout": 0}
    launch_id = uuid.uuid4().hex
    launch_record.open_record({"id": launch_id, "provider": "gh", "spec": "org/repo/HEAD", "created": time.time()})
    assert redis_client.client.zscore(keys.LAUNCHES_ACTIVE(), launch_id) is None


def test_a_client_resumes_only_its_own_launch_while_it_has_events(app: Flask) -> None:
    launch_id = uuid.uuid4().hex
    launch_record.open_record({"id": launch_id, "provider": "gh", "spec": "org/repo/HEAD", "created": time.time()})
    assert not launch_record.belongs_to(launch_id, "gh", "org/repo/HEAD"), "no events yet: nothing to resume"
    events.publish({"phase": "waiting", "message": "w\n"}, channel=launch_id)
    assert launch_record.belongs_to(launch_id, "gh", "org/repo/HEAD")
    assert not launch_record.belongs_to(launch_id, "gh", "org/other/HEAD"), "another URL's launch"


def test_a_launch_ends_once(app: Flask) -> None:
    launch_id = uuid.uuid4().hex
    assert launch_record.ended(launch_id) is None
    assert launch_record.claim_end(launch_id, "ready")
    assert not launch_record.claim_end(launch_id, launch_record.CANCELLED), "the sweep came too late"
    assert launch_record.ended(launch_id) == "ready"


def test_a_queued_launch_is_pending_until_one_copy_is_picked_up(app: Flask) -> None:
    launch = {"id": uuid.uuid4().hex, "provider": "gh", "spec": "org/repo/HEAD", "created": time.time() - 100}
    launch_record.open_record(launch)
    assert launch_record.queued_payload(launch["id"]) == launch
    assert launch["id"] in launch_record.pending_since(time.time() - 50)
    assert launch_record.pick_up(launch["id"], redelivered=False) == (True, None), "the first copy runs"
    assert launch["id"] not in launch_record.pending_since(time.time())
    assert launch_record.pick_up(launch["id"], redelivered=False) == (False, None), "a second copy does not"
    assert launch_record.pick_up(launch["id"], redelivered=True)[0], "a copy re-delivered after a crash does"
    assert launch_record.claim_end(launch["id"], "ready")
    assert launch_record.pick_up(launch["id"], redelivered=True) == (True, "ready"), "and hears it ended"


def test_without_pickup_timeout_nothing_is_kept_for_requeueing(app: Flask) -> None:
    app.config["BINDERY"] = {**app.config["BINDERY"], "launch_pickup_timeout": 0}
    launch = {"id": uuid.uuid4().hex, "provider": "gh", "spec": "org/repo/HEAD", "created": time.time() - 100}
    launch_record.open_record(launch)
    assert launch_record.queued_payload(launch["id"]) is None
    assert launch["id"] not in launch_record.pending_since(time.time())


def test_the_first_event_is_published_with_the_record(app: Flask) -> None:
    launch_id = uuid.uuid4().hex
    launch_record.open_record({"id": launch_id, "provider": "gh", "spec": "org/repo/HEAD", "created": time.time()},
                              first_event={"phase": "waiting", "message": "w\n"})
    assert [data for _, data in events.read(launch_id)] == [{"phase": "waiting", "message": "w\n"}]
    assert 590 < redis_client.client.ttl(keys.EVENTS(launch_id)) <= 600
    assert launch_record.belongs_to(launch_id, "gh", "org/repo/HEAD")


def test_ending_with_an_event_publishes_it_only_for_the_first_claim(app: Flask) -> None:
    launch_id = uuid.uuid4().hex
    assert launch_record.end_with(launch_id, "ready", {"phase": "ready", "url": "u"})
    assert not launch_record.end_with(launch_id, "failed", {"phase": "failed", "message": "late\n"})
    assert launch_record.ended(launch_id) == "ready"
    assert [data for _, data in events.read(launch_id)] == [{"phase": "ready", "url": "u"}]
    assert 590 < redis_client.client.ttl(keys.EVENTS(launch_id)) <= 600
    assert 590 < redis_client.client.ttl(keys.LAUNCH_END(launch_id)) <= 600
    other = uuid.uuid4().hex
    assert launch_record.claim_end(other, launch_record.CANCELLED)  # the abandon sweep was first
    assert not launch_record.end_with(other, "ready", {"phase": "ready", "url": "u"})
    assert events.read(other) == []
