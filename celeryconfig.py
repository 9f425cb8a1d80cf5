"""Celery settings that do not depend on Bindery's config; the rest come from ``from_settings``."""

from __future__ import annotations

from typing import Any

imports = (
    "tasks.steps.resolve_ref", "tasks.steps.check_registry", "tasks.steps.attach", "tasks.steps.build",
    "tasks.steps.push", "tasks.steps.launch",
    "tasks.beat.cleanup", "tasks.beat.cleanup_build_pods", "tasks.beat.abandon", "tasks.beat.stranded",
    "tasks.beat.warm_pool", "tasks.beat.proxy_routes",
)

# Builds run on their own prefork queue so long builds never starve launches;
# everything else waits on I/O in a gevent pool.
task_routes = {
    "bindery.build": {"queue": "build"},
    "bindery.push": {"queue": "build"},
}
task_default_queue = "launch"

task_serializer = "json"
accept_content = ["json"]
task_ignore_result = True
result_backend = None

# A step re-runs after a worker crash; steps are idempotent.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
worker_hijack_root_logger = False
broker_connection_retry_on_startup = True
# Task events feed Flower's task list; they are the `task_events` setting (from_settings), off by
# default.  The web's "sent" events would cost a publish per launch for little.
task_send_sent_event = False


def abandon_check_interval(timeout: float) -> float:
    """Beat period of the abandoned-launch check: a sixth of the timeout, between 1 and 10 s."""
    return min(10.0, max(1.0, timeout / 6))


def from_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings derived from Bindery's validated config."""
    return {
        "broker_url": settings["redis_url"],
        # Longer than any build, so a running build is never delivered twice.  A launch-only
        # worker uses a short, renewed one instead (tasks/worker_lease.py).
        "broker_transport_options": {
            "visibility_timeout": settings["build_timeout"] + 300,
            # Every greenlet of the launch worker may ack or publish at once (kombu's default is 10).
            "max_connections": settings["launch_concurrency"] + 32,
        },
        "broker_pool_limit": settings["launch_concurrency"] + 32,
        # An event publish per task state, for Flower's task list: about 9 % of a cached launch.
        "worker_send_task_events": settings["task_events"],
        # Queueing a launch rides out a Redis restart as long as our own Redis commands do.
        "task_publish_retry_policy": {"max_retries": int(settings["redis_retry_seconds"]) + 2,
                                      "interval_start": 0, "interval_step": 0.5, "interval_max": 1.0},
        "beat_schedule": {
            "cleanup-servers": {"task": "bindery.cleanup_servers",
                                "schedule": float(settings["cleanup_interval"])},
            # Launches nobody reads are cancelled (tasks/beat/abandon.py).
            **({"abandon-launches": {"task": "bindery.abandon_launches",
                                     "schedule": abandon_check_interval(settings["abandon_timeout"])}}
               if settings["abandon_timeout"] else {}),
            # Launches whose message a dying worker took are queued again (tasks/beat/stranded.py).
            **({"requeue-stranded": {"task": "bindery.requeue_stranded",
                                     "schedule": min(10.0, max(1.0, settings["launch_pickup_timeout"] / 3))}}
               if settings["launch_pickup_timeout"] else {}),
            # The docker launcher's warm pool (tasks/beat/warm_pool.py).
            **({"warm-pool": {"task": "bindery.warm_pool", "schedule": float(settings["warm_pool_interval"])}}
               if settings["launcher"] == "docker" and (settings["warm_pool"] or settings["warm_pool_top"]) else {}),
            # configurable-http-proxy's routes, where servers sit behind one (tasks/beat/proxy_routes.py).
            **({"reconcile-proxy-routes": {"task": "bindery.reconcile_proxy_routes", "schedule": 30.0}}
               if settings["launcher"] == "docker" and settings["proxy_api_url"] else {}),
            **({"cleanup-build-pods": {"task": "bindery.cleanup_build_pods",
                                       "schedule": float(settings["cleanup_interval"])}}
               if settings["builder"] == "kubernetes" else {}),
        },
    }
