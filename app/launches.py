"""Starting a launch from the web: record it, say it is queued, hand it to Celery."""

from __future__ import annotations

import time
import uuid

from flask import current_app

from app.extensions import events, redis_client


def _meta_key(launch_id: str) -> str:
    return f"bindery:launch:{launch_id}"


def start(provider: str, spec: str, *, build_only: bool, origin: str) -> str:
    """Queue the chain for a spec already validated by its provider; returns the launch id (its event channel)."""
    from tasks.chain import launch_chain

    launch_id = uuid.uuid4().hex
    ttl = current_app.config["BINDERY"]["event_ttl"]
    redis_client.client.set(_meta_key(launch_id), f"{provider}/{spec}", ex=ttl)
    events.publish({"phase": "waiting", "message": "Waiting for a worker to pick up the launch...\n"},
                   channel=launch_id)
    launch_chain({"id": launch_id, "provider": provider, "spec": spec, "build_only": build_only,
                  "origin": origin, "created": time.time()}).apply_async()
    return launch_id


def belongs_to(launch_id: str, provider: str, spec: str) -> bool:
    """Whether a reconnecting client's launch is this URL's and still has its events."""
    return redis_client.client.get(_meta_key(launch_id)) == f"{provider}/{spec}" and events.exists(launch_id)


def request_of(launch_id: str) -> str | None:
    """``provider/spec`` of a launch still on record, else None."""
    value = redis_client.client.get(_meta_key(launch_id))
    return str(value) if value else None
