"""Push the built image to the registry (skipped when it is already there)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from flask import current_app

from app.extensions import redis_client
from tasks import backends
from tasks.build_common import BuildStep, finish_build, publish_all
from tasks.lock import BuildLock


@shared_task(bind=True, base=BuildStep, name="bindery.push")
def push(self: BuildStep, launch: dict[str, Any]) -> dict[str, Any]:
    config = current_app.config["BINDERY"]
    lock = BuildLock(redis_client.client, launch["image"])
    try:
        if not backends.image_store(config).exists(launch["image"]):
            with lock.heartbeat(launch["build_id"], config["build_lock_ttl"]):
                backends.pusher(config).push(launch["image"], lambda event: publish_all(launch, event))
        finish_build(launch)
    except Exception:
        lock.release(launch["build_id"])
        raise
    return launch
