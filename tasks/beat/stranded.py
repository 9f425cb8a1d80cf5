"""Stranded launches: queued, never picked up, and their message gone.

Celery's Redis transport pops a message and only then records it as unacked, so a
launch worker killed in between takes the message with it and the launch would wait
forever.  A launch still pending ``launch_pickup_timeout`` seconds after it was queued,
while the launch queue is empty (so its message cannot be waiting there), is queued
again from its record.  The pick-up claim (tasks/launch_record.py) lets exactly one
copy run, so a copy that was only slow (held by a busy worker) costs one skipped step.
"""

from __future__ import annotations

import logging
import time

from celery import shared_task
from flask import current_app

from app import keys
from app.extensions import redis_client
from tasks import chain, launch_record

log = logging.getLogger(__name__)

LAUNCH_QUEUE = "launch"


@shared_task(name="bindery.requeue_stranded")
def requeue_stranded() -> int:
    """Beat task: queue again each launch whose message was lost; returns how many."""
    timeout = current_app.config["BINDERY"]["launch_pickup_timeout"]
    client = redis_client.client
    if not timeout or client.llen(keys.QUEUE(LAUNCH_QUEUE)):
        return 0  # a backlog: the message may still be in it
    now, requeued = time.time(), 0
    for launch_id in launch_record.pending_since(now - timeout):
        launch = launch_record.queued_payload(launch_id)
        if launch is None or launch_record.ended(launch_id):
            client.zrem(keys.LAUNCHES_PENDING(), launch_id)
            continue
        log.warning("launch %s was queued %.0f s ago and no worker has it: queuing it again",
                    launch_id, now - launch["created"])
        client.zadd(keys.LAUNCHES_PENDING(), {launch_id: now}, xx=True)  # look again after another timeout
        chain.start(launch).apply_async()
        requeued += 1
    return requeued
