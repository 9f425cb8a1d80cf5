"""Beat task: remove launched servers that stopped or outlived ``launch_max_age``."""

from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from tasks import backends

log = logging.getLogger(__name__)


@shared_task(name="bindery.cleanup_servers")
def cleanup_servers() -> int:
    config = current_app.config["BINDERY"]
    removed = backends.launcher(config).cleanup(max_age=config["launch_max_age"])
    if removed:
        log.info("removed %d launched servers", removed)
    return removed
