"""A launch's record in Redis: what it asked for, that it may still run, and how it ended.

The web opens the record when it queues a launch; every step and beat job reads it.
A launch ends once: whoever takes its end claim first (the launch step publishing
``ready``, a failure, or the abandon sweep cancelling it) decides, and steps of a
launch that has ended do nothing.

Until a launch worker picks it up, a launch is *pending*.  Celery's Redis transport can
lose a message that a dying worker had just popped (before it recorded it as unacked),
so the launch as queued is kept too: the stranded-launch beat job queues it again, and
the pick-up claim makes sure only one copy runs.
"""

from __future__ import annotations

import json
from typing import Any

from flask import current_app

from app import keys
from app.extensions import events, redis_client

CANCELLED = "cancelled"


def open_record(launch: dict[str, Any], first_event: dict[str, Any] | None = None) -> None:
    """Remember the launch (and that it runs, when abandoned launches are swept) before it is queued.

    ``first_event`` is published on the launch's channel in the same round trip.
    """
    settings = current_app.config["BINDERY"]
    ttl, launch_id, now = settings["event_ttl"], launch["id"], launch["created"]
    pipe = redis_client.client.pipeline(transaction=False)
    pipe.set(keys.LAUNCH_REQUEST(launch_id), f"{launch['provider']}/{launch['spec']}", ex=ttl)
    if settings["launch_pickup_timeout"]:
        pipe.set(keys.LAUNCH_PAYLOAD(launch_id), json.dumps(launch), ex=ttl)
        pipe.zadd(keys.LAUNCHES_PENDING(), {launch_id: now})
    if settings["abandon_timeout"] and launch.get("trigger", "click") == "click":
        # (a push's or an API call's build has no reader by design: it is never abandoned)
        pipe.zadd(keys.LAUNCHES_ACTIVE(), {launch_id: now})
        pipe.zremrangebyscore(keys.LAUNCHES_ACTIVE(), "-inf", now - ttl)  # bounded even if beat never runs
    if first_event is not None:
        events.queue_publish(pipe, first_event, channel=launch_id)
    pipe.execute()


def belongs_to(launch_id: str, provider: str, spec: str) -> bool:
    """Whether a reconnecting client's launch is this URL's and still has its events."""
    return request_of(launch_id) == f"{provider}/{spec}" and events.exists(launch_id)


def request_of(launch_id: str) -> str | None:
    """``provider/spec`` of a launch still on record, else None."""
    value = redis_client.client.get(keys.LAUNCH_REQUEST(launch_id))
    return str(value) if value else None


def queued_payload(launch_id: str) -> dict[str, Any] | None:
    """The launch as the web queued it, while it is on record."""
    value = redis_client.client.get(keys.LAUNCH_PAYLOAD(launch_id))
    return json.loads(value) if value else None


def pick_up(launch_id: str, *, redelivered: bool) -> tuple[bool, str | None]:
    """A worker takes the launch up: (whether this copy may run, how the launch ended if it did).

    A copy delivered again after its worker died may always run (tasks/worker_lease.py counts
    those); a fresh copy runs only if no other copy was picked up first.
    """
    settings = current_app.config["BINDERY"]
    pipe = redis_client.client.pipeline(transaction=False)
    pipe.get(keys.LAUNCH_END(launch_id))
    pipe.set(keys.LAUNCH_PICKED(launch_id), "1", nx=True, ex=settings["event_ttl"])
    pipe.zrem(keys.LAUNCHES_PENDING(), launch_id)
    outcome, first, _ = pipe.execute()
    return bool(first) or redelivered, (str(outcome) if outcome else None)


def pending_since(before: float, limit: int = 100) -> list[str]:
    """Launches queued before ``before`` that no worker has picked up yet."""
    found: Any = redis_client.client.zrangebyscore(keys.LAUNCHES_PENDING(), "-inf", before, start=0, num=limit)
    return list(found)


def claim_end(launch_id: str, outcome: str) -> bool:
    """Take the launch's one end (``ready``, ``cancelled``, ``failed``); False when it already ended."""
    ttl = current_app.config["BINDERY"]["event_ttl"]
    return bool(redis_client.client.set(keys.LAUNCH_END(launch_id), outcome, nx=True, ex=ttl))


def end_with(launch_id: str, outcome: str, event: dict[str, Any], pipe: Any = None) -> Any:
    """:func:`claim_end`, and publish ``event`` only if the claim was ours, in one round trip.

    Given a pipeline, the script joins it (its result: the event's id, or None when the
    launch had already ended) so other commands can ride along.
    """
    return events.publish_if_claimed(event, launch_id, keys.LAUNCH_END(launch_id), outcome, pipe=pipe)


def ended(launch_id: str, client: Any = None) -> str | None:
    """How the launch ended (its claim), or None while it runs (``client``: a launcher's own)."""
    value = (client or redis_client.client).get(keys.LAUNCH_END(launch_id))
    return str(value) if value else None
