"""Starting a launch from the web: record it, say it is queued, hand it to Celery."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from tasks import chain
from tasks.launch_record import open_record


def start(provider: str, spec: str, *, build_only: bool, origin: str, request_origin: str = "",
          user: str | None = None, trigger: str = "click", pool_specs: Sequence[str] = ()) -> str:
    """Queue the chain for a spec already validated by its provider; returns the launch id (its event channel).

    ``request_origin``: the page that asked (launch events record it); ``user``: the logged-in hub
    user the server is for (auth_enabled), else None (an anonymous launch).  ``trigger``: ``click``,
    or ``push``/``api`` for a build-only launch from app/hooks.py, whose ``pool_specs`` (the links
    the commit is now the image of) get warm servers of it once built.
    """
    launch_id = uuid.uuid4().hex
    launch = {"id": launch_id, "provider": provider, "spec": spec, "build_only": build_only,
              "origin": origin, "request_origin": request_origin, "created": time.time(),
              **({"user": user} if user else {}),
              **({"trigger": trigger, "pool_specs": list(pool_specs)} if trigger != "click" else {})}
    open_record(launch, first_event={"phase": "waiting", "message": "Waiting for a worker to pick up the launch...\n"})
    chain.start(launch).apply_async()
    return launch_id
