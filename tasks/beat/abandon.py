"""Abandoned launches: a launch nobody reads any more is cancelled and its server removed.

Readers mark a channel as read at each keepalive (``keys.READER``); the web records every
launch in ``keys.LAUNCHES_ACTIVE`` (tasks/launch_record.py).  This beat job looks only at
launches whose last known reader is older than ``abandon_timeout``, and cancels each by
taking its end claim: a launch step that started a server just before removes it itself, and a
launch waiting its turn to start a server leaves the line (tasks/lock.py, ``StartLine``).
A shared build others wait on is not stopped: it keeps running and its image is reused.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from celery import shared_task
from flask import current_app

from app import keys
from app.errors import BinderyError
from app.extensions import redis_client
from app.sse import TERMINAL_PHASES
from tasks.launch_record import CANCELLED, claim_end, request_of
from tasks.lock import START_LINES, StartLine
from tasks.outcomes import fail, record_launch, stop_servers

log = logging.getLogger(__name__)


class LaunchAbandoned(BinderyError):
    status_code = 410


def unwatched(client: redis.Redis, now: float, timeout: float, limit: int = 1000) -> list[str]:
    """Launches nobody has read for ``timeout`` s; the others' scores move to their last reader."""
    candidates: Any = client.zrangebyscore(keys.LAUNCHES_ACTIVE(), "-inf", now - timeout, start=0, num=limit)
    if not candidates:
        return []
    seen: Any = client.mget([keys.READER(launch_id) for launch_id in candidates])
    found, moved = [], {}
    for launch_id, value in zip(candidates, seen, strict=True):
        last = float(value) if value else None
        if last is not None and now - last <= timeout:
            moved[launch_id] = last  # watched: look again once that reader is timeout old
        else:
            found.append(launch_id)
    if moved:
        client.zadd(keys.LAUNCHES_ACTIVE(), moved, xx=True)
    return found


def _first_and_last(client: redis.Redis, launch_id: str) -> tuple[float | None, dict[str, Any] | None]:
    """When the launch's stream began (its first entry id is a ms timestamp) and its last event."""
    first: Any = client.xrange(keys.EVENTS(launch_id), count=1)
    last: Any = client.xrevrange(keys.EVENTS(launch_id), count=1)
    if not first or not last:
        return None, None
    return int(first[0][0].split("-")[0]) / 1000, json.loads(last[0][1]["data"])


def cancel(launch_id: str, timeout: float) -> bool:
    """Cancel one unwatched launch: its ``failed`` event, its server removed; False if it had ended."""
    client = redis_client.client
    created, last = _first_and_last(client, launch_id)
    if last is None or last.get("phase") in TERMINAL_PHASES or not claim_end(launch_id, CANCELLED):
        client.zrem(keys.LAUNCHES_ACTIVE(), launch_id)
        return False
    fail(LaunchAbandoned(
        f"Nobody was watching this launch for {timeout:g} s, so it was cancelled and any server it "
        "had started was removed. Open the launch link again (or reload the page) to start a new "
        "launch; an image build already under way keeps running and will be reused."), launch_id)
    client.zrem(keys.LAUNCHES_ACTIVE(), launch_id)
    for line in START_LINES:  # its place goes to the next (its own step also leaves when it looks)
        StartLine(client, line).leave(launch_id)
    stop_servers(launch_id)
    provider, _, spec = (request_of(launch_id) or "unknown/").partition("/")
    record_launch({"created": created or time.time(), "provider": provider, "spec": spec}, CANCELLED)
    log.info("launch %s cancelled: no reader for %g s", launch_id, timeout)
    return True


@shared_task(name="bindery.abandon_launches")
def abandon_launches() -> int:
    """Beat task: cancel every launch nobody has read for ``abandon_timeout`` s."""
    timeout = current_app.config["BINDERY"]["abandon_timeout"]
    if not timeout:
        return 0
    cancelled = sum(cancel(launch_id, timeout) for launch_id in unwatched(redis_client.client, time.time(), timeout))
    if cancelled:
        log.info("cancelled %d unwatched launches", cancelled)
    return cancelled
