"""Is the image already there?  If so launch at once; if not, build it exactly once.

The first request for a missing image takes the build lock and queues the
build chain; every request, that first one included, then follows the build's
event stream (the attach step) and launches when the image is there.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import shared_task
from flask import current_app

from app.errors import RegistryError
from app.extensions import events, redis_client
from app.keys import build_channel
from tasks import backends, chain
from tasks.lock import BuildLock
from tasks.prebuilt import require_prebuilt


def found_event(image: str) -> dict[str, Any]:
    return {"phase": "built", "imageName": image, "message": "Found built image, launching...\n"}


@shared_task(name="bindery.check_registry")
def check_registry(launch: dict[str, Any]) -> None:
    config = current_app.config["BINDERY"]
    store = backends.image_store(config)
    image = launch["image"]
    if launch["provider"] == "image":  # a prebuilt image: launch it if it is there, never build
        require_prebuilt(config, image, store)
        events.publish(found_event(image), channel=launch["id"])
        chain.image_found(launch)
        return
    lock = BuildLock(redis_client.client, image)
    for _ in range(3):  # the lock may change hands between looking and taking
        if store.exists(image):
            events.publish(found_event(image), channel=launch["id"])
            chain.image_found(launch)
            return
        build_id = uuid.uuid4().hex
        # Held until the build starts; the build then keeps it alive with a short heartbeat.
        if lock.acquire(build_id, ttl=config["build_timeout"]):
            if store.exists(image):  # built while we were taking the lock
                lock.release(build_id)
                continue
            launch = {**launch, "build_id": build_id}
            events.publish({"phase": "waiting", "message": "Build queued; waiting for a build worker...\n"},
                           channel=build_channel(build_id))
            chain.build_needed(launch, push=bool(config["registry_url"]))
            return
        holder = lock.holder()
        if holder:
            events.publish({"phase": "waiting", "message": "Another launch is building this image; "
                            "following its build...\n"}, channel=launch["id"])
            chain.build_elsewhere({**launch, "build_id": holder})
            return
    raise RegistryError("The build lock for this image kept changing hands; please try again.", 503)
