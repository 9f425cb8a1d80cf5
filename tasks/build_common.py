"""What the build-queue steps (build, push) share: their task class, the build's channel, the finish.

Build steps publish only to the build's shared channel.  Every launch waiting for the
image, the one that queued the build included, follows that channel (the attach step)
and launches on ``built``; so when a build worker dies, a re-delivered build or a rebuild
after the lock expires reaches them all, and a re-run step never launches a second server.
"""

from __future__ import annotations

from typing import Any

from app.errors import BinderyError
from app.extensions import events, redis_client
from app.keys import build_channel
from tasks import last_good
from tasks.base import BinderyTask
from tasks.lock import BuildLock
from tasks.outcomes import fail


class BuildStep(BinderyTask):
    """A step that works for everyone waiting on the build: its failure goes to the build's channel."""

    launch_queue_step = False  # runs even if the launch that queued it was cancelled: others wait on it

    def report_failure(self, launch: dict[str, Any], error: BinderyError) -> None:
        if launch.get("build_id"):
            BuildLock(redis_client.client, launch["image"]).release(launch["build_id"])
            fail(error, build_channel(launch["build_id"]))
        else:
            super().report_failure(launch, error)


def publish_all(launch: dict[str, Any], event: dict[str, Any]) -> None:
    """An event for everyone following the build (the launches relay it to their own channels)."""
    events.publish(event, channel=build_channel(launch["build_id"]))


def finish_build(launch: dict[str, Any]) -> None:
    """The image is stored: tell everyone waiting, then let the next request find it."""
    last_good.remember(launch)
    publish_all(launch, {"phase": "built", "imageName": launch["image"],
                         "message": "Built image, launching...\n"})
    BuildLock(redis_client.client, launch["image"]).release(launch["build_id"])
