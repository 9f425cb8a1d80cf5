"""A launch worker that dies mid-launch: its launches come back within a minute, a few times.

Celery's Redis transport keeps every delivered, unacked message in a hash and
puts it back on its queue once it is older than ``visibility_timeout``.  Builds
need that to be longer than any build, which left a launch held by a killed
launch worker stranded for as long.  So a worker that consumes only the launch
queue keeps its unacked messages under keys of its own with a short timeout
(``launch_visibility_timeout``), and renews the lease of every message it holds
every quarter of that: a launch waiting on a long build is never delivered
twice, a dead worker's launches are delivered again to another worker, and a
launch that keeps killing its worker fails after ``launch_crash_retries``.

The putting back is done here too: kombu runs it only from an idle poll, and a
gevent worker's poll is never idle (its BRPOP answers every second), so a
gevent worker would otherwise never return anyone's messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis
from celery import Celery
from celery.worker import state
from flask import current_app

from app import keys
from app.errors import LaunchError
from app.extensions import events, redis_client
from tasks import chain
from tasks.launch_record import claim_end, ended, pick_up
from tasks.outcomes import launch_failed, stop_servers

log = logging.getLogger(__name__)

LAUNCH_QUEUE = "launch"
UNACKED_KEY = keys.LAUNCH_UNACKED()
UNACKED_INDEX_KEY = keys.LAUNCH_UNACKED_INDEX()


def launch_only(queues: Any) -> bool:
    """Whether a worker started with ``-Q <queues>`` consumes the launch queue and nothing else."""
    names = [q.strip() for q in queues.split(",")] if isinstance(queues, str) else list(queues or [])
    return names == [LAUNCH_QUEUE]


def transport_options(settings: dict[str, Any]) -> dict[str, Any]:
    """Broker options of a launch-only worker: its own unacked keys, a short visibility timeout."""
    return {
        "unacked_key": UNACKED_KEY,
        "unacked_index_key": UNACKED_INDEX_KEY,
        "unacked_mutex_key": keys.LAUNCH_UNACKED_MUTEX(),
        "visibility_timeout": settings["launch_visibility_timeout"],
        # Look for a dead worker's messages on every idle poll (about every 2 s), not every tenth.
        "unacked_restore_throttle": 1,
        "unacked_restore_interval": 2,
    }


def held_tags() -> list[str]:
    """Delivery tags of the messages this worker holds (running or prefetched)."""
    requests = list(state.reserved_requests) + list(state.active_requests)
    return sorted({tag for tag in (_tag(request) for request in requests) if tag})


def _tag(request: Any) -> str | None:
    message = getattr(request, "message", None)
    return getattr(message, "delivery_tag", None)


def renew(client: Any, tags: Iterable[str], now: float | None = None) -> int:
    """Mark the messages as just delivered (only those still unacked); returns how many."""
    stamp = time.time() if now is None else now
    scores = {tag: stamp for tag in tags}
    return int(client.zadd(UNACKED_INDEX_KEY, scores, xx=True, ch=True)) if scores else 0


def restore_expired(celery_app: Celery) -> None:
    """Put messages whose lease expired (their worker died) back on the launch queue."""
    with celery_app.connection_for_read() as connection:
        connection.default_channel.qos.restore_visible(num=1000, interval=1)


def keep_leases(celery_app: Celery) -> threading.Thread:
    """Every quarter of the visibility timeout: renew our leases, return dead workers' messages."""
    flask_app = celery_app.flask_app  # type: ignore[attr-defined]
    period = flask_app.config["BINDERY"]["launch_visibility_timeout"] / 4

    def run() -> None:
        client = flask_app.extensions["bindery.redis"]
        errors = (redis.RedisError, *celery_app.connection_for_read().connection_errors)  # lazy: no connect
        while True:
            time.sleep(period)
            try:
                renew(client, held_tags())
                restore_expired(celery_app)
            except errors as exc:
                log.warning("could not keep launch leases (%s); trying again", type(exc).__name__)

    thread = threading.Thread(target=run, name="bindery-launch-leases", daemon=True)
    thread.start()
    return thread


def may_run(request: Any, launch: dict[str, Any]) -> bool:
    """Whether a launch-queue step should run: not when its launch has ended, another copy of its first
    message was picked up already, or it crashed its worker too often."""
    delivery = getattr(request, "delivery_info", None) or {}
    redelivered = bool(delivery.get("redelivered"))
    if delivery and getattr(request, "task", None) == chain.RESOLVE_REF:  # a launch's first message
        may, outcome = pick_up(launch["id"], redelivered=redelivered)
        if not may:
            log.info("launch %s was picked up already: this copy is skipped", launch["id"])
            return False
    else:
        outcome = ended(launch["id"])
    if outcome:
        log.info("launch %s already ended (%s): step skipped", launch["id"], outcome)
        return False
    if not redelivered:
        return True
    config = current_app.config["BINDERY"]
    key = keys.REDELIVERED(launch["id"])
    pipe = redis_client.client.pipeline()
    pipe.incr(key)
    pipe.expire(key, config["event_ttl"])
    attempt = int(pipe.execute()[0])
    limit = config["launch_crash_retries"]
    if attempt > limit:
        log.warning("launch %s: worker stopped %d times; giving up", launch["id"], attempt)
        if claim_end(launch["id"], "failed"):
            launch_failed(launch, LaunchError(
                f"The worker running this launch stopped unexpectedly (delivered {attempt + 1} times), so "
                "the launch was given up. Please try again later; if it keeps happening, tell the "
                "operators.", 503))
            stop_servers(launch["id"])
        return False
    log.warning("launch %s: delivered again after its worker stopped (retry %d of %d)",
                launch["id"], attempt, limit)
    events.publish({"phase": "waiting", "message": f"The worker running this launch stopped; retrying "
                    f"(retry {attempt} of {limit})...\n"}, channel=launch["id"])
    return True
