"""Beat task: delete finished build pods and build pods older than ``build_pod_max_age``.

Only scheduled when the ``kubernetes`` builder is configured (celeryconfig).
"""

from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from tasks import backends

log = logging.getLogger(__name__)


@shared_task(name="bindery.cleanup_build_pods")
def cleanup_build_pods() -> int:
    config = current_app.config["BINDERY"]
    if config["builder"] != "kubernetes":
        return 0
    removed: int = backends.builder(config).cleanup(max_age=config["build_pod_max_age"])
    if removed:
        log.info("removed %d build pods", removed)
    return removed
