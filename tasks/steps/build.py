"""Build the image with repo2docker, holding the image's build lock (tasks/build_common.py says
why build steps talk only to the build's channel)."""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task
from celery.exceptions import Ignore
from flask import current_app

from app.build_log_store import BuildLog
from app.errors import BinderyError, BuildError
from app.extensions import engine, engine_url, redis_client
from app.keys import build_channel
from app.metrics import metrics
from providers import get_provider
from tasks import backends, timings
from tasks.backends.registry import EngineStore
from tasks.build_common import BuildStep, finish_build, publish_all
from tasks.lock import BuildLock
from tasks.outcomes import fail


def build_log(launch: dict[str, Any]) -> BuildLog:
    return BuildLog(redis_client.client, launch["log_path"], current_app.config["BINDERY"])


def _failed(launch: dict[str, Any], error: BinderyError) -> None:
    """Everyone following the build hears why (each may get the last good image instead)."""
    if isinstance(error, BuildError):
        error.details["log_url"] = launch["origin"] + launch["log_path"].lstrip("/")
    fail(error, build_channel(launch["build_id"]))


def _image_in_engine(image: str) -> bool:
    return EngineStore(engine.client, engine_url(current_app.config["BINDERY"])).exists(image)


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
        figures.builds.labels(trigger=launch.get("trigger") or "click", status=status).inc()
        log.finish("built" if status == "success" else "failed")
