"""Start a server from the image and say where it is (or, build_only, just the image)."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task
from flask import current_app

from app import launch_events
from app.extensions import events, redis_client
from app.metrics import metrics
from providers import get_provider
from tasks import backends, timings
from tasks.backends import warm_pool
from tasks.launch_record import CANCELLED, end_with, ended
from tasks.outcomes import record_launch, stop_servers

log = logging.getLogger(__name__)


def ready_event(launch: dict[str, Any], url: str, token: str) -> dict[str, Any]:
    """BinderHub's ``ready`` event, with the links a federation redirector reads."""
    host = launch["origin"]
    resolved_spec = launch["resolved_spec"] or get_provider(  # (a message queued by an older release)
        launch["provider"], launch["spec"], current_app.config["BINDERY"]).resolved_spec(launch["resolved_ref"])
    return {
        "phase": "ready", "message": f"server running at {url}\n", "url": url, "token": token,
        "image": launch["image"], "repo_url": launch["repo_url"], "binder_ref_url": launch["ref_url"],
        "binder_launch_host": host,
        "binder_request": f"{host}v2/{launch['provider']}/{launch['spec']}",
        "binder_persistent_request": f"{host}v2/{launch['provider']}/{resolved_spec}",
    }


@shared_task(name="bindery.launch")
def launch(launch: dict[str, Any]) -> None:
    channel = launch["id"]
    config = current_app.config["BINDERY"]
    if launch["build_only"]:
        claimed = end_with(channel, "ready", {"phase": "ready", "message": "Image built; not launching (build_only).\n",
                                              "imageName": launch["image"]})
        if claimed is not None and launch.get("trigger", "click") != "click":
            _prebuilt(config, launch)
        return
    events.publish({"phase": "launching", "message": "Launching server...\n"}, channel=channel)
    figures = metrics()
    figures.inprogress_launches.inc()
    started = time.monotonic()
    launcher = backends.launcher(config)
    try:
        url, token = launcher.launch(launch, lambda event: events.publish(event, channel=channel))
    except Exception:
        if ended(channel) != CANCELLED:
            raise
        url = token = ""  # cancelled while starting (the abandon sweep removed the server under us)
    finally:
        figures.inprogress_launches.dec()
    if not url or not _end_ready(launch, url, token, time.monotonic() - started):
        # Cancelled while the server started: nobody will use it, and the sweep may have run
        # before it existed, so remove it here.
        log.info("launch %s was cancelled while its server started; removing it", channel)
        stop_servers(channel)
        return
    log.info("server ready at %s", url)
    record_launch(launch, "success")
    launch_events.emit(config, launch_events.make_event(launch, "success"), redis_client.client)


def _prebuilt(config: dict[str, Any], launch: dict[str, Any]) -> None:
    """A push's (or an API call's) image is ready: warm pools of its links follow it, and it is counted."""
    if warm_pool.note_build(config, redis_client.client, launch):
        log.info("warm pool of %s: refill with %s queued", ", ".join(launch["pool_specs"]), launch["image"])
    launch_events.emit(config, launch_events.make_event(launch, "success"), redis_client.client)


def _end_ready(launch: dict[str, Any], url: str, token: str, seconds: float) -> bool:
    """Claim the launch's end, publish ``ready`` if it was ours, and record the duration: one round trip."""
    pipe = redis_client.client.pipeline(transaction=False)
    end_with(launch["id"], "ready", ready_event(launch, url, token), pipe=pipe)
    timings.queue_record(pipe, "launch", launch["repo_url"], seconds)
    claimed = pipe.execute(raise_on_error=False)[0]
    if isinstance(claimed, Exception):
        raise claimed
    return claimed is not None
