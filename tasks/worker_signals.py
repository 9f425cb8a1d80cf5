"""Worker process hooks: a worker's own /metrics when configured, live gauges of dead children dropped,
the launch worker's short, renewed message leases (tasks/worker_lease.py), and the heartbeat /health
reads (tasks/worker_heartbeat.py)."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import celeryd_init, worker_process_shutdown, worker_ready, worker_shutdown

from app.metrics import mark_process_dead, start_worker_server
from tasks import worker_heartbeat, worker_lease

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

    @celeryd_init.connect(weak=False, dispatch_uid="bindery-heartbeat-queues")
    def _heartbeat_queues(sender: Any, conf: Any, options: dict[str, Any], **_: Any) -> None:
        celery_app.bindery_heartbeat = (  # type: ignore[attr-defined]
            worker_heartbeat.queues_of(options.get("queues"), conf.task_default_queue), str(sender))

    @worker_ready.connect(weak=False, dispatch_uid="bindery-heartbeat")
    def _heartbeat(**_: Any) -> None:
        queues, name = celery_app.bindery_heartbeat  # type: ignore[attr-defined]
        worker_heartbeat.keep_beating(celery_app.flask_app.extensions["bindery.redis"],  # type: ignore[attr-defined]
                                      queues, name)

    @worker_shutdown.connect(weak=False, dispatch_uid="bindery-heartbeat-stop")
    def _heartbeat_stop(**_: Any) -> None:
        queues, name = getattr(celery_app, "bindery_heartbeat", ([], ""))
        try:
            worker_heartbeat.forget(celery_app.flask_app.extensions["bindery.redis"],  # type: ignore[attr-defined]
                                    queues, name)
        except Exception as exc:  # noqa: BLE001 - shutting down: the heartbeat ages out anyway
            log.warning("worker heartbeat not removed (%s)", type(exc).__name__)

    @worker_process_shutdown.connect(weak=False, dispatch_uid="bindery-forget-child")
    def _forget_child(**_: Any) -> None:
        mark_process_dead(os.getpid())
