"""Abandoned launches: a launch nobody reads any more is cancelled and its server removed.

Readers mark a channel as read at each keepalive (``app.sse.reader_key``); the
web records every launch in ``app.launches.ACTIVE_KEY``.  A beat task looks
only at launches whose last known reader is older than ``abandon_timeout``.

A launch ends once: whoever takes its end claim (``claim_end``) first, the
launch step publishing ``ready`` or this task cancelling, decides.  Steps of a
launch that has ended do nothing (``tasks.base.BinderyTask``); a launch step
that started a server just before it was cancelled removes that server itself.
A shared build others wait on is not stopped: it keeps running and its image is
reused by the next launch.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from celery import shared_task
from flask import current_app

from app.errors import BinderyError
from app.extensions import redis_client
from app.launches import ACTIVE_KEY, request_of
from app.sse import TERMINAL_PHASES, reader_key, stream_key
from tasks import backends
from tasks.base import fail, record_launch

log = logging.getLogger(__name__)

CANCELLED = "cancelled"


class LaunchAbandoned(BinderyError):
    status_code = 410


def end_key(launch_id: str) -> str:
    return f"bindery:end:{launch_id}"


def claim_end(launch_id: str, outcome: str) -> bool:
    """Take the launch's one end (``ready``, ``cancelled``, ``failed``); False when it already ended."""
    ttl = current_app.config["BINDERY"]["event_ttl"]
    return bool(redis_client.client.set(end_key(launch_id), outcome, nx=True, ex=ttl))


def ended(launch_id: str) -> str | None:
    """How the launch ended (its claim), or None while it runs."""
    value = redis_client.client.get(end_key(launch_id))
    return str(value) if value else None


def unwatched(client: redis.Redis, now: float, timeout: float, limit: int = 1000) -> list[str]:
    """Launches nobody has read for ``timeout`` s; the others' scores move to their last reader."""
    candidates: Any = client.zrangebyscore(ACTIVE_KEY, "-inf", now - timeout, start=0, num=limit)
    if not candidates:
        return []
    seen: Any = client.mget([reader_key(launch_id) for launch_id in candidates])
    found, moved = [], {}
    for launch_id, value in zip(candidates, seen, strict=True):
        last = float(value) if value else None
        if last is not None and now - last <= timeout:
            moved[launch_id] = last  # watched: look again once that reader is timeout old
        else:
            found.append(launch_id)
    if moved:
        client.zadd(ACTIVE_KEY, moved, xx=True)
    return found


def _first_and_last(client: redis.Redis, launch_id: str) -> tuple[float | None, dict[str, Any] | None]:
    """When the launch's stream began (its first entry id is a ms timestamp) and its last event."""
    first: Any = client.xrange(stream_key(launch_id), count=1)
    last: Any = client.xrevrange(stream_key(launch_id), count=1)
    if not first or not last:
        return None, None
    return int(first[0][0].split("-")[0]) / 1000, json.loads(last[0][1]["data"])


def cancel(launch_id: str, timeout: float) -> bool:
    """Cancel one unwatched launch: its ``failed`` event, its server removed; False if it had ended."""
    client = redis_client.client
    created, last = _first_and_last(client, launch_id)
    if last is None or last.get("phase") in TERMINAL_PHASES or not claim_end(launch_id, CANCELLED):
        client.zrem(ACTIVE_KEY, launch_id)
        return False
    fail(LaunchAbandoned(
        f"Nobody was watching this launch for {timeout:g} s, so it was cancelled and any server it "
        "had started was removed. Open the launch link again (or reload the page) to start a new "
        "launch; an image build already under way keeps running and will be reused."), launch_id)
    client.zrem(ACTIVE_KEY, launch_id)
    stop_servers(launch_id)
    provider, _, spec = (request_of(launch_id) or "unknown/").partition("/")
    record_launch({"created": created or time.time(), "provider": provider, "spec": spec}, CANCELLED)
    log.info("launch %s cancelled: no reader for %g s", launch_id, timeout)
    return True


def stop_servers(launch_id: str) -> None:
    """Remove whatever server the launch started (best effort; cleanup_servers catches the rest)."""
    try:
        backends.launcher(current_app.config["BINDERY"]).stop(launch_id)
    except Exception:  # the engine or hub may be away; never let that break the sweep
        log.exception("could not remove the servers of launch %s", launch_id)


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
