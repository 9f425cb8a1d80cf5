"""Starting a launch from the web: record it, say it is queued, hand it to Celery."""

from __future__ import annotations

import time
import uuid

from flask import current_app

from app.extensions import events, redis_client

#: Launches that may still be running, scored by when they were last known to be watched
#: (tasks/abandon.py cancels those nobody reads any more).
ACTIVE_KEY = "bindery:launches:active"


def _meta_key(launch_id: str) -> str:
    return f"bindery:launch:{launch_id}"


def start(provider: str, spec: str, *, build_only: bool, origin: str) -> str:
    """Queue the chain for a spec already validated by its provider; returns the launch id (its event channel)."""
    from tasks.chain import launch_chain

    launch_id = uuid.uuid4().hex
    settings = current_app.config["BINDERY"]
    ttl, now = settings["event_ttl"], time.time()
    pipe = redis_client.client.pipeline(transaction=False)
    pipe.set(_meta_key(launch_id), f"{provider}/{spec}", ex=ttl)
    if settings["abandon_timeout"]:
        pipe.zadd(ACTIVE_KEY, {launch_id: now})
        pipe.zremrangebyscore(ACTIVE_KEY, "-inf", now - ttl)  # bounded even if beat never runs
    pipe.execute()
    events.publish({"phase": "waiting", "message": "Waiting for a worker to pick up the launch...\n"},
                   channel=launch_id)
    launch_chain({"id": launch_id, "provider": provider, "spec": spec, "build_only": build_only,
                  "origin": origin, "created": now}).apply_async()
    return launch_id


def belongs_to(launch_id: str, provider: str, spec: str) -> bool:
    """Whether a reconnecting client's launch is this URL's and still has its events."""
    return redis_client.client.get(_meta_key(launch_id)) == f"{provider}/{spec}" and events.exists(launch_id)


def request_of(launch_id: str) -> str | None:
    """``provider/spec`` of a launch still on record, else None."""
    value = redis_client.client.get(_meta_key(launch_id))
    return str(value) if value else None
