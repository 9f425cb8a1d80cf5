"""Beat task: keep the docker launcher's warm pool full, fresh and alive (tasks/backends/warm_pool.py)."""

from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from tasks import backends
from tasks.backends import warm_pool

log = logging.getLogger(__name__)


@shared_task(name="bindery.warm_pool")
def maintain_pool() -> dict[str, int]:
    """Retire unwanted, old or dead pooled servers and start new ones up to each image's size."""
    config = current_app.config["BINDERY"]
    if not warm_pool.enabled(config):
        return {"retired": 0, "started": 0}
    done = warm_pool.maintain(backends.launcher(config))
    if done["retired"] or done["started"]:
        log.info("warm pool: %(started)d servers started, %(retired)d retired", done)
    return done


@shared_task(name="bindery.warm_pool_fill")
def fill_pool(image: str) -> int:
    """Refill one image's pool right after a launch took a server (or found none)."""
    config = current_app.config["BINDERY"]
    if not warm_pool.enabled(config):
        return 0
    launcher = backends.launcher(config)
    target = warm_pool.wanted(config, launcher.redis).get(image)
    if target is None:
        return 0
    room = warm_pool.capacity(config) - warm_pool.idle_count(launcher.redis)
    return warm_pool.fill(launcher, image, target[1], target[0], room)
