"""Step 3: build the image with repo2docker, holding the image's build lock.

Build steps publish only to the build's shared channel.  Every launch waiting
for the image, the one that queued the build included, follows that channel
(tasks/attach.py) and launches on ``built``; so when a build worker dies, a
re-delivered build or a rebuild after the lock expires reaches them all, and a
re-run step never launches a second server.
"""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task
from celery.exceptions import Ignore
from flask import current_app

from app.build_logs import BuildLog
from app.errors import BinderyError, BuildError
from app.extensions import engine, events, redis_client
from app.metrics import metrics
from providers import get_provider
from tasks import backends, last_good, timings
from tasks.base import BinderyTask, fail
from tasks.channels import build_channel
from tasks.lock import BuildLock


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


def build_log(launch: dict[str, Any]) -> BuildLog:
    return BuildLog(redis_client.client, launch["log_path"], current_app.config["BINDERY"])


def _failed(launch: dict[str, Any], error: BinderyError) -> None:
    """Everyone following the build hears why (each may get the last good image instead)."""
    if isinstance(error, BuildError):
        error.details["log_url"] = launch["origin"] + launch["log_path"].lstrip("/")
    fail(error, build_channel(launch["build_id"]))


def _image_in_engine(image: str) -> bool:
    from tasks.backends.registry import EngineStore

    return EngineStore(engine.client).exists(image)


@shared_task(bind=True, base=BuildStep, name="bindery.build")
def build(self: BuildStep, launch: dict[str, Any]) -> dict[str, Any]:
    config = current_app.config["BINDERY"]
    lock = BuildLock(redis_client.client, launch["image"])
    if not lock.acquire(launch["build_id"], ttl=config["build_lock_ttl"]):
        # Our lock expired (this message was re-delivered late) and someone else builds now;
        # the launches that followed us have moved on to that build.
        raise Ignore()
    try:
        # (build pods push themselves: with the kubernetes builder there is no local engine to ask)
        if config["builder"] == "docker" and _image_in_engine(launch["image"]):  # a re-run after a crash
            publish_all(launch, {"phase": "building", "message": "Image already built.\n"})
        else:
            _run_build(launch, lock)
        if not config["registry_url"]:
            finish_build(launch)
    except BinderyError as error:  # e.g. the engine is down: say so, and end the chain here
        lock.release(launch["build_id"])
        _failed(launch, error)
        raise Ignore() from error
    except Exception:
        lock.release(launch["build_id"])
        raise
    return launch


def _run_build(launch: dict[str, Any], lock: BuildLock) -> None:
    """repo2docker with a heartbeat on the lock, its log kept, and build metrics recorded."""
    config = current_app.config["BINDERY"]
    repo = get_provider(launch["provider"], launch["spec"], config)
    log = build_log(launch)
    log.start(repo_url=launch["repo_url"], ref=launch["resolved_ref"], ref_url=launch["ref_url"] or "",
              image=launch["image"])

    def emit(event: dict[str, Any]) -> None:
        publish_all(launch, event)
        log.append(event.get("message", ""))

    figures = metrics()
    started, status = time.monotonic(), "failure"
    figures.inprogress_builds.inc()
    try:
        with lock.heartbeat(launch["build_id"], config["build_lock_ttl"]) as lost:
            backends.builder(config).build(repo, launch, emit)
        if lost.is_set():
            raise BuildError("The build lost its lock (Redis unreachable for too long); please retry.")
        status = "success"
        timings.record("build", launch["repo_url"], time.monotonic() - started)
    finally:
        figures.inprogress_builds.dec()
        figures.build_time.labels(status=status).observe(time.monotonic() - started)
        figures.build_count.labels(status=status, provider=launch["provider"], repo=launch["repo_url"]).inc()
        log.finish("built" if status == "success" else "failed")
