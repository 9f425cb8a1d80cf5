"""How a launch ends, in one place: its ``failed`` events, its metrics, its servers removed."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import current_app

from app.errors import BinderyError, failed_event
from app.extensions import events
from app.metrics import metrics
from tasks import backends

log = logging.getLogger(__name__)


def fail(error: BinderyError, *channels: str) -> None:
    """Publish the error's ``failed`` event on each channel."""
    event = failed_event(error)
    for channel in channels:
        events.publish(event, channel=channel)


def record_launch(launch: dict[str, Any], status: str) -> None:
    """A launch ended: BinderHub's launch metrics (their one place)."""
    figures = metrics()
    figures.launch_time.labels(status=status, retries="0").observe(max(0.0, time.time() - launch["created"]))
    figures.launch_count.labels(status=status, provider=launch["provider"],
                                repo=launch.get("repo_url") or launch["spec"]).inc()


def launch_failed(launch: dict[str, Any], error: BinderyError, *extra_channels: str) -> None:
    """The one way a launch ends in failure: its ``failed`` event and its metrics."""
    fail(error, launch["id"], *extra_channels)
    record_launch(launch, "failure")


def stop_servers(launch_id: str) -> None:
    """Remove whatever server the launch started (best effort; the cleanup beat job catches the rest)."""
    try:
        backends.launcher(current_app.config["BINDERY"]).stop(launch_id)
    except Exception:  # the engine or hub may be away; never let that break the caller
        log.exception("could not remove the servers of launch %s", launch_id)
