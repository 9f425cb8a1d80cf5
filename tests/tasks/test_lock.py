"""The lock helpers against a real Redis: the build lock (one holder, expiry of a dead holder, heartbeat)
and the line of server starts (order, leases of dead workers, leaving the line)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

from app.redis_server import EmbeddedRedis
from tasks.lock import BuildLock, LeftTheLine, StartLine, start_concurrency, starting_message


def _client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def test_only_one_holder_and_holder_is_recorded(redis_server: EmbeddedRedis) -> None:
    lock = BuildLock(_client(redis_server), "img:one")
    assert lock.acquire("a" * 32, ttl=30)
    assert not lock.acquire("b" * 32, ttl=30)
    assert lock.holder() == "a" * 32
    assert lock.acquire("a" * 32, ttl=30), "the holder may take it again (a re-delivered build)"
    lock.release("b" * 32)  # not the holder: no effect
    assert lock.holder() == "a" * 32
    lock.release("a" * 32)
    assert lock.holder() is None


def test_dead_holder_lock_expires(redis_server: EmbeddedRedis) -> None:
    lock = BuildLock(_client(redis_server), "img:expire")
    assert lock.acquire("a" * 32, ttl=1)
    time.sleep(1.2)
    assert lock.acquire("b" * 32, ttl=30)
    assert not lock.refresh("a" * 32, ttl=30), "the old holder must notice it lost the lock"


def test_heartbeat_keeps_lock_past_its_ttl(redis_server: EmbeddedRedis) -> None:
    lock = BuildLock(_client(redis_server), "img:heartbeat")
    assert lock.acquire("a" * 32, ttl=1)
    with lock.heartbeat("a" * 32, ttl=1) as lost:
        time.sleep(2.0)
        assert lock.holder() == "a" * 32
    assert not lost.is_set()
    lock.release("a" * 32)


# --- the line of server starts (StartLine) -------------------------------------------------------

class ShortLeases(StartLine):
    LEASE = 1.0  # a dead worker's slot or place is gone after a second


def _line(server: EmbeddedRedis, cls: type[StartLine] = StartLine) -> StartLine:
    return cls(_client(server), f"test-{uuid.uuid4().hex[:8]}")


def test_starts_are_admitted_first_come_first_served_limit_at_a_time(redis_server: EmbeddedRedis) -> None:
    line = _line(redis_server)
    assert line.admit("a", 1.0, 2) == (True, 0, 1)
    assert line.admit("c", 3.0, 2) == (True, 0, 2), "one slot was free and c was first in the line"
    line.leave("c")
    assert line.admit("d", 4.0, 2) == (True, 0, 2)
    # now full: e, f and g wait in the order they were asked for, whatever order they look in
    assert line.admit("g", 7.0, 2) == (False, 0, 2)
    assert line.admit("f", 6.0, 2) == (False, 0, 2)
    assert line.admit("e", 5.0, 2) == (False, 0, 2)
    assert line.admit("g", 7.0, 2) == (False, 2, 2), "two wait before g, two servers start: 4 ahead"
    assert line.waiting() == 3
    line.leave("a")
    assert line.admit("g", 7.0, 2)[0] is False, "a slot is free, but e is first in the line"
    assert line.admit("f", 6.0, 2)[0] is False
    assert line.admit("e", 5.0, 2) == (True, 0, 2)
    line.leave("d")
    assert line.admit("f", 6.0, 2) == (True, 0, 2)
    assert line.admit("g", 7.0, 2) == (False, 0, 2)
    assert line.admit("e", 5.0, 2) == (True, 0, 2), "a holder looking again keeps its slot"
    assert line.waiting() == 1


def test_a_dead_worker_s_slot_and_place_expire(redis_server: EmbeddedRedis) -> None:
    line = _line(redis_server, ShortLeases)
    assert line.admit("dead-holder", 1.0, 1)[0]
    assert line.admit("dead-waiter", 2.0, 1) == (False, 0, 1)
    assert line.admit("alive", 3.0, 1) == (False, 1, 1)
    assert line.renew("dead-holder")
    time.sleep(1.3)  # neither dead one renews nor looks again
    assert not line.renew("dead-holder"), "its lease ran out: the slot is gone"
    assert line.admit("alive", 3.0, 1) == (True, 0, 1), "the dead waiter's place went with its lease"
    assert line.waiting() == 0


def test_turn_holds_a_slot_while_the_body_runs_and_renews_it(redis_server: EmbeddedRedis) -> None:
    line = _line(redis_server, ShortLeases)
    told: list[int] = []
    with line.turn("holder", 1.0, 1, told=told.append, wanted=lambda: True):
        time.sleep(1.5)  # longer than the lease: the heartbeat keeps it
        assert line.admit("other", 2.0, 1) == (False, 0, 1)
    assert told == [], "admitted at once: nothing to tell"
    assert line.admit("other", 2.0, 1) == (True, 0, 1), "given back at the end of the body"


def test_waiting_turns_start_in_order_and_are_told_how_many_start_before_them(
        redis_server: EmbeddedRedis) -> None:
    line = _line(redis_server)
    assert line.admit("blocker-1", 1.0, 2)[0] and line.admit("blocker-2", 2.0, 2)[0]  # both slots taken
    started: list[str] = []
    running: list[str] = []
    most = [0]
    told: dict[str, list[int]] = {}
    guard = threading.Lock()

    def launch(name: str, arrival: float) -> None:
        with line.turn(name, arrival, 2, told=told[name].append, wanted=lambda: True, poll=0.05):
            with guard:
                started.append(name)
                running.append(name)
                most[0] = max(most[0], len(running))
            time.sleep(0.3)
            with guard:
                running.remove(name)

    names = [f"launch-{i}" for i in range(6)]
    threads = []
    for i, name in reversed(list(enumerate(names))):  # the last asked for looks first: order is by arrival
        told[name] = []
        threads.append(threading.Thread(target=launch, args=(name, 100.0 + i)))
        threads[-1].start()
    deadline = time.monotonic() + 30
    while line.waiting() < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert line.waiting() == 6
    assert line.admit("launch-5", 105.0, 2) == (False, 5, 2), "last in line whatever the order they looked in"
    line.leave("blocker-1")
    line.leave("blocker-2")
    for thread in threads:
        thread.join(30)
    # two at a time, in order of arrival (the two of one wave may begin their bodies in either order)
    assert [sorted(started[i:i + 2]) for i in (0, 2, 4)] == [names[0:2], names[2:4], names[4:6]], started
    assert most[0] == 2
    # told the starts before it: the two under way, and those of the line before it (at most 5)
    assert told["launch-0"] == [2], told
    assert all(told[name] and all(2 <= ahead <= 2 + i for ahead in told[name]) for i, name in enumerate(names)), told
    assert line.waiting() == 0


def test_a_launch_whose_client_went_away_leaves_the_line(redis_server: EmbeddedRedis) -> None:
    line = _line(redis_server)
    assert line.admit("starting", 1.0, 1)[0]
    gone = threading.Event()
    with pytest.raises(LeftTheLine):
        with line.turn("abandoned", 2.0, 1, told=lambda ahead: gone.set(), wanted=lambda: False):
            pytest.fail("never admitted")
    assert gone.is_set() and line.waiting() == 0
    # the abandon sweep removes a waiter's place itself: the next one moves up at once
    assert line.admit("swept", 3.0, 1) == (False, 0, 1)
    assert line.admit("next", 4.0, 1) == (False, 1, 1)
    line.leave("swept")
    line.leave("starting")
    assert line.admit("next", 4.0, 1) == (True, 0, 1)


def test_what_a_waiting_launch_is_told_and_the_measured_default() -> None:
    assert starting_message(2) == "Waiting to start: 2 servers are starting before yours.\n"
    assert starting_message(1) == "Waiting to start: 1 server is starting before yours.\n"
    assert "yours is next" in starting_message(0)
    assert start_concurrency({"launch_start_concurrency": 7}) == 7
    assert start_concurrency({"launch_start_concurrency": "auto"}) >= 1
