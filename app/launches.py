"""Starting a launch from the web: record it, say it is queued, hand it to Celery."""

from __future__ import annotations

import uuid

from tasks import chain
from tasks.launch_record import open_record


def start(provider: str, spec: str, *, build_only: bool, origin: str) -> str:
    """Queue the chain for a spec already validated by its provider; returns the launch id (its event channel)."""
    launch_id = uuid.uuid4().hex
    created = open_record(launch_id, provider, spec, first_event={
        "phase": "waiting", "message": "Waiting for a worker to pick up the launch...\n"})
    chain.start({"id": launch_id, "provider": provider, "spec": spec, "build_only": build_only,
                 "origin": origin, "created": created}).apply_async()
    return launch_id
