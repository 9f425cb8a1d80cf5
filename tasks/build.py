"""Step 3: build the image with repo2docker, holding the image's build lock.

Every event goes to the launch that owns the build and to the build's shared
channel, which launches waiting on the same image read from its first line.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.exceptions import Ignore
from flask import current_app

from app.errors import BuildError
from app.extensions import engine, events, redis_client
from providers import get_provider
from tasks import backends
from tasks.base import BinderyTask
from tasks.channels import build_channel
from tasks.lock import BuildLock


class BuildStep(BinderyTask):
    """A step that works for everyone waiting on the build: failures reach its channel too."""

    def extra_failure_channels(self, launch: dict[str, Any]) -> tuple[str, ...]:
        return (build_channel(launch["build_id"]),) if launch.get("build_id") else ()


def channels(launch: dict[str, Any]) -> tuple[str, str]:
    return (launch["id"], build_channel(launch["build_id"]))


def publish_all(launch: dict[str, Any], event: dict[str, Any]) -> None:
    for channel in channels(launch):
        events.publish(event, channel=channel)


def finish_build(launch: dict[str, Any]) -> None:
    """The image is stored: tell everyone waiting, then let the next request find it."""
    publish_all(launch, {"phase": "built", "imageName": launch["image"],
                         "message": "Built image, launching...\n"})
    BuildLock(redis_client.client, launch["image"]).release(launch["build_id"])


def _image_in_engine(image: str) -> bool:
    from tasks.backends.registry import EngineStore

    return EngineStore(engine.client).exists(image)


@shared_task(bind=True, base=BuildStep, name="bindery.build")
def build(self: BuildStep, launch: dict[str, Any]) -> dict[str, Any]:
    from tasks.attach import attach

    config = current_app.config["BINDERY"]
    lock = BuildLock(redis_client.client, launch["image"])
    if not lock.acquire(launch["build_id"], ttl=config["build_lock_ttl"]):
        # Our lock expired (this message was re-delivered late) and someone else builds now.
        attach.delay({**launch, "build_id": lock.holder()})
        raise Ignore()
    try:
        if _image_in_engine(launch["image"]):  # a re-run after a crash between build and push
            publish_all(launch, {"phase": "building", "message": "Image already built.\n"})
        else:
            repo = get_provider(launch["provider"], launch["spec"], config)
            with lock.heartbeat(launch["build_id"], config["build_lock_ttl"]) as lost:
                backends.builder(config).build(repo, launch, lambda event: publish_all(launch, event))
            if lost.is_set():
                raise BuildError("The build lost its lock (Redis unreachable for too long); please retry.")
        if not config["registry_url"]:
            finish_build(launch)
    except Exception:
        lock.release(launch["build_id"])
        raise
    return launch
