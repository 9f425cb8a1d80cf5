"""Worker process hooks: a worker's own /metrics when configured, and live gauges of dead children dropped."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown, worker_ready

log = logging.getLogger(__name__)


def connect(celery_app: Celery) -> None:
    """Wire the hooks for this app's workers (signals fire only inside a worker)."""

    @worker_ready.connect(weak=False, dispatch_uid="bindery-worker-metrics")
    def _serve_metrics(**_: Any) -> None:
        settings = celery_app.flask_app.config["BINDERY"]  # type: ignore[attr-defined]
        if settings["worker_metrics_port"]:
            from app.metrics import start_worker_server

            try:
                start_worker_server(settings["worker_metrics_address"], settings["worker_metrics_port"])
            except OSError as exc:  # another worker on this machine serves it already
                log.warning("worker metrics port %s not served: %s", settings["worker_metrics_port"], exc)

    @worker_process_shutdown.connect(weak=False, dispatch_uid="bindery-forget-child")
    def _forget_child(**_: Any) -> None:
        from app.metrics import mark_process_dead

        mark_process_dead(os.getpid())
