"""Open event streams per client address, counted in a real Redis.

A crashed holder is a real process killed with ``os._exit`` (no clean-up runs).
The limit across two real gunicorn workers is in tests/app/test_front_door.py.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import redis
from werkzeug.serving import make_server

from app import create_app, keys, stream_limit
from app.extensions import events
from app.redis_server import EmbeddedRedis
from tests.stack import collect, read_events


def _key() -> str:
    return uuid.uuid4().hex


def test_admits_up_to_the_limit_and_a_release_frees_a_place(redis_server: EmbeddedRedis) -> None:
    db = redis.Redis.from_url(redis_server.url, decode_responses=True)
    key = _key()
    slots = [stream_limit.admit(db, key, 3, 60) for _ in range(3)]
    assert [count for _, count in slots] == [1, 2, 3] and all(slot for slot, _ in slots)
    refused, count = stream_limit.admit(db, key, 3, 60)
    assert refused is None and count == 3
    slots[0][0].release()  # type: ignore[union-attr]
    again, count = stream_limit.admit(db, key, 3, 60)
    assert again is not None and count == 3
    assert all(member.split(":")[0].isdigit() for member in db.zrange(keys.STREAMS(key), 0, -1)), \
        "each place names the process that holds it"


def test_concurrent_admissions_never_exceed_the_limit(redis_server: EmbeddedRedis) -> None:
    """Correctness without load: 30 simultaneous admissions, each on its own connection, limit 7."""
    key = _key()
    clients = [redis.Redis.from_url(redis_server.url) for _ in range(30)]
    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        results = list(pool.map(lambda c: stream_limit.admit(c, key, 7, 60), clients))
    assert sum(slot is not None for slot, _ in results) == 7


def test_a_dead_process_leaks_its_places_for_one_lease_only(redis_server: EmbeddedRedis) -> None:
    key = _key()
    holder = ("import os, redis; from app import stream_limit; "
              f"db = redis.Redis.from_url({redis_server.url!r}); "
              f"[stream_limit.admit(db, {key!r}, 2, 1.5) for _ in range(2)]; os._exit(0)")
    subprocess.run([sys.executable, "-c", holder], check=True, timeout=60)
    db = redis.Redis.from_url(redis_server.url)
    refused, count = stream_limit.admit(db, key, 2, 1.5)
    assert refused is None and count == 2, "the dead process's streams still count within their lease"
    time.sleep(1.6)
    slot, count = stream_limit.admit(db, key, 2, 1.5)
    assert slot is not None and count == 1, "after the lease they are gone"


def test_hold_renews_while_streaming_and_releases_when_closed(redis_server: EmbeddedRedis) -> None:
    db = redis.Redis.from_url(redis_server.url, decode_responses=True)
    key = _key()
    slot, _ = stream_limit.admit(db, key, 5, 0.3)
    assert slot is not None
    first_expiry = db.zscore(slot.key, slot.member)

    def body() -> Any:
        while True:
            time.sleep(0.15)
            yield ":keepalive\n\n"

    stream = slot.hold(body())
    for _ in range(4):
        next(stream)
    renewed = db.zscore(slot.key, slot.member)
    assert renewed is not None and first_expiry is not None and renewed > first_expiry + 0.3
    stream.close()  # what the WSGI server does when the client goes away
    assert db.zscore(slot.key, slot.member) is None


def test_lease_covers_three_keepalives() -> None:
    assert stream_limit.lease_seconds(25) == 75
    assert stream_limit.lease_seconds(1) == stream_limit.MIN_LEASE


def test_build_api_refuses_a_stream_over_the_limit(redis_server: EmbeddedRedis) -> None:
    """Two resumed streams held open; the third gets a failed event with status 429 (threaded WSGI server)."""
    app = create_app({"redis_url": redis_server.url, "launcher": "bench", "max_streams_per_ip": 2,
                      "keepalive_interval": 0.1, "trusted_proxy_hops": 1})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/build/gh/org/repo/HEAD"
    launch_id = uuid.uuid4().hex
    with app.app_context():
        redis.Redis.from_url(redis_server.url).set(f"bindery:launch:{launch_id}", "gh/org/repo/HEAD", ex=600)
        first = events.publish({"phase": "waiting", "message": "w"}, channel=launch_id)
    headers = {"X-Forwarded-For": f"2001:db8:{uuid.uuid4().hex[:4]}::7", "Last-Event-ID": f"{launch_id}_{first}"}
    try:
        held = [read_events(url, headers=headers, timeout=10) for _ in range(2)]
        for stream in held:
            assert next(stream) == (None, ":keepalive")
        refused = collect(url, headers=headers, timeout=10)[-1][1]
        assert refused["phase"] == "failed" and refused["status_code"] == 429
        assert "2 are open" in refused["message"] and refused["open_streams"] == 2
        held[0].close()
        time.sleep(0.5)  # the server notices the closed socket at its next keepalive
        again = read_events(url, headers=headers, timeout=10)
        assert next(again) == (None, ":keepalive"), "a closed stream gives its place back"
        for stream in (held[1], again):
            stream.close()
    finally:
        server.shutdown()
        thread.join(10)
