"""Beat task: the proxy's routes equal the recorded ones, every 30 s (celeryconfig.py).

The runner rebuilds CHP's table after each CHP start; this catches the rest: a route whose
``POST`` or ``DELETE`` failed while CHP was busy or away only for a moment, or a CHP restarted
by something other than the runner.  One ``GET /api/routes`` and one Redis ``HGETALL`` a round.
"""

from __future__ import annotations

import logging

import redis
import requests
from celery import shared_task
from flask import current_app

from app.extensions import redis_client
from tasks.backends import proxy_routes

log = logging.getLogger(__name__)

@shared_task(name="bindery.reconcile_proxy_routes")
def reconcile_proxy_routes() -> int:
    """Returns how many routes were added or deleted (0 without a proxy, or when it is away)."""
    api = proxy_routes.from_config(current_app.config["BINDERY"])
    if api is None:
        return 0
    try:
        added, deleted = proxy_routes.reconcile(redis_client.client, api)
    except (requests.RequestException, redis.RedisError) as exc:
        log.warning("proxy: routes not reconciled (%s)", type(exc).__name__)
        return 0
    return added + deleted
