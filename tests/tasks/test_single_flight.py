"""SingleFlight: concurrent callers of one key share one call (our own logic; real threads)."""

from __future__ import annotations

import threading
import time

import pytest

from tasks.single_flight import SingleFlight


def _together(flights: SingleFlight[str], key: str, call: object, callers: int) -> list[object]:
    outcomes: list[object] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            value: object = flights.run(key, call)  # type: ignore[arg-type]
        except Exception as exc:  # the outcome under test
            value = exc
        with lock:
            outcomes.append(value)

    threads = [threading.Thread(target=one) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return outcomes


def test_callers_that_arrive_meanwhile_share_one_call() -> None:
    flights: SingleFlight[str] = SingleFlight()
    calls: list[int] = []

    def slow() -> str:
        calls.append(1)
        time.sleep(0.3)
        return f"sha-{len(calls)}"

    assert _together(flights, "repo\0main", slow, 20) == ["sha-1"] * 20
    assert len(calls) == 1
    assert flights.run("repo\0main", slow) == "sha-2", "nothing is kept after the call ends"


def test_other_keys_do_not_wait() -> None:
    flights: SingleFlight[str] = SingleFlight()
    release = threading.Event()
    threading.Thread(target=flights.run, args=("a", lambda: release.wait(5) and "a"), daemon=True).start()
    started = time.monotonic()
    assert flights.run("b", lambda: "b") == "b"
    assert time.monotonic() - started < 1
    release.set()


def test_an_error_reaches_every_waiter_and_is_not_kept() -> None:
    flights: SingleFlight[str] = SingleFlight()

    def failing() -> str:
        time.sleep(0.2)
        raise LookupError("ref main not found")

    outcomes = _together(flights, "k", failing, 5)
    assert len(outcomes) == 5 and all(isinstance(o, LookupError) for o in outcomes)
    with pytest.raises(LookupError):
        flights.run("k", failing)
    assert flights.run("k", lambda: "ok") == "ok"
