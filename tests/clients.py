"""Event-stream clients that behave like browsers: they follow a launch in a thread and,
when the stream breaks (or the test drops it), reconnect with ``Last-Event-ID``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import requests


class Client(threading.Thread):
    """One EventSource: every event it received, in order, and how often it reconnected."""

    def __init__(self, url: str, *, deadline: float = 300) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.deadline = deadline
        self.events: list[tuple[str | None, dict[str, Any]]] = []
        self.reconnects = 0
        self._response: requests.Response | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.deadline
        while time.monotonic() < deadline:
            headers = {"Accept": "text/event-stream"}
            if self.events and self.events[-1][0]:
                headers["Last-Event-ID"] = self.events[-1][0] or ""
            try:
                if self._follow(headers):
                    return
            except (requests.RequestException, ValueError, AttributeError, OSError):
                pass  # the stream broke: reconnect as a browser does
            self.reconnects += 1
            time.sleep(0.5)

    def _follow(self, headers: dict[str, str]) -> bool:
        """Read one connection; True once a terminal event arrived."""
        response = requests.get(self.url, headers=headers, stream=True, timeout=60)
        self._response = response
        event_id, data = None, []
        try:
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                elif line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line == "" and data:
                    event = json.loads("\n".join(data))
                    self.events.append((event_id, event))
                    event_id, data = None, []
                    if event.get("phase") in ("ready", "failed"):
                        return True
        finally:
            response.close()
        return False

    def drop(self) -> None:
        """Cut the connection, as a network blip would."""
        if self._response is not None:
            self._response.close()

    def said(self, text: str) -> bool:
        return any(text in data.get("message", "") for _, data in list(self.events))

    @property
    def phases(self) -> list[str]:
        return [data["phase"] for _, data in self.events]

    @property
    def launch_id(self) -> str:
        ids = {event_id.split("_")[0] for event_id, _ in self.events if event_id}
        assert len(ids) == 1, f"one launch per client, got {ids}"
        return ids.pop()


def wait_for(condition: Callable[[], Any], timeout: float, what: str | Callable[[], str]) -> None:
    """Poll until ``condition()`` is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(0.1)
