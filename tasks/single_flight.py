"""One call at a time per key in this process; callers that arrive meanwhile share its outcome.

A burst of launches of one repository (a class clicking the same link) would
otherwise run one ``git ls-remote`` each: the launch worker's largest cost in
``bench/build_dedup.py``.  Only calls in flight are shared, nothing is kept
afterwards, so no answer is older than the caller's own request by more than
the one call's duration.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Flight(Generic[T]):
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[T]):
    """``run(key, call)``: the first caller runs ``call``; the others wait for its result or error."""

    def __init__(self) -> None:
        self._flights: dict[str, _Flight[T]] = {}
        self._lock = threading.Lock()

    def run(self, key: str, call: Callable[[], T]) -> T:
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if leader:
            # (if the leader is interrupted, e.g. its greenlet killed, the waiters get this)
            flight.error = RuntimeError("the shared call was interrupted; please retry")
            try:
                flight.result = call()
                flight.error = None
            except Exception as exc:  # noqa: BLE001 - handed to every waiter, then raised here too
                flight.error = exc
            finally:
                with self._lock:
                    del self._flights[key]
                flight.done.set()
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return flight.result  # type: ignore[return-value]
