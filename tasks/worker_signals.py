"""Worker process hooks: a worker's own /metrics when configured, live gauges of dead children dropped,
and the launch worker's short, renewed message leases (tasks/worker_lease.py)."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import celeryd_init, worker_process_shutdown, worker_ready

from app.metrics import mark_process_dead, start_worker_server
from tasks import worker_lease

log = logging.getLogger(__name__)


def connect(celery_app: Celery) -> None:
    """Wire the hooks for this app's workers (signals fire only inside a worker)."""

    @worker_ready.connect(weak=False, dispatch_uid="bindery-worker-metrics")
    def _serve_metrics(**_: Any) -> None:
        settings = celery_app.flask_app.config["BINDERY"]  # type: ignore[attr-defined]
        if settings["worker_metrics_port"]:
            try:
                start_worker_server(settings["worker_metrics_address"], settings["worker_metrics_port"])
            except OSError as exc:  # another worker on this machine serves it already
                log.warning("worker metrics port %s not served: %s", settings["worker_metrics_port"], exc)

    @celeryd_init.connect(weak=False, dispatch_uid="bindery-launch-leases")
    def _launch_leases(conf: Any, options: dict[str, Any], **_: Any) -> None:
        if worker_lease.launch_only(options.get("queues")):
            settings = celery_app.flask_app.config["BINDERY"]  # type: ignore[attr-defined]
            conf.broker_transport_options = {**(conf.broker_transport_options or {}),
                                             **worker_lease.transport_options(settings)}
            celery_app.bindery_launch_leases = True  # type: ignore[attr-defined]

    @worker_ready.connect(weak=False, dispatch_uid="bindery-launch-lease-renewer")
    def _renew_leases(**_: Any) -> None:
        if getattr(celery_app, "bindery_launch_leases", False):
            worker_lease.keep_leases(celery_app)

    @worker_process_shutdown.connect(weak=False, dispatch_uid="bindery-forget-child")
    def _forget_child(**_: Any) -> None:
        mark_process_dead(os.getpid())
