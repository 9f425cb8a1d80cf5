"""Prometheus metrics under BinderHub's names, so existing dashboards keep working.

Web and Celery workers on one machine share ``PROMETHEUS_MULTIPROC_DIR`` (the
runner sets it to ``<data_dir>/prometheus``), so the web's ``/metrics``
shows figures recorded in the workers too.  On a cluster each worker pod
serves its own ``/metrics`` on ``worker_metrics_port`` for Prometheus to scrape.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import Any

from flask import Flask
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

BUILD_BUCKETS = (60, 120, 300, 600, 1800, 3600, 7200, float("inf"))
LAUNCH_BUCKETS = (2, 5, 10, 20, 30, 60, 120, 300, 600, float("inf"))


class BinderHubMetrics:
    """The metric objects, created once per process (see :func:`metrics`)."""

    def __init__(self) -> None:
        self.build_time = Histogram("binderhub_build_time_seconds", "Histogram of build times",
                                    ["status"], buckets=BUILD_BUCKETS)
        self.launch_time = Histogram("binderhub_launch_time_seconds", "Histogram of launch times",
                                     ["status", "retries"], buckets=LAUNCH_BUCKETS)
        self.build_count = Counter("binderhub_build_count", "Counter of builds by repo",
                                   ["status", "provider", "repo"])
        self.launch_count = Counter("binderhub_launch_count", "Counter of launches by repo",
                                    ["status", "provider", "repo"])
        self.inprogress_builds = Gauge("binderhub_inprogress_builds", "Builds currently in progress",
                                       multiprocess_mode="livesum")
        self.inprogress_launches = Gauge("binderhub_inprogress_launches", "Launches currently in progress",
                                         multiprocess_mode="livesum")
        self.pool_launches = Counter("bindery_warm_pool_launches", "Launches of pooled images: pool hit or miss",
                                     ["result"])
        self.builds = Counter("bindery_builds", "Builds run, by what started them (click, push, api) and outcome",
                              ["trigger", "status"])
        self.hook_requests = Counter("bindery_prebuild_requests",
                                     "Pushes and /api/prebuild calls, by trigger and answer (queued, ignored, refused)",
                                     ["trigger", "result"])
        self.github_rate_limit = Gauge("binderhub_github_rate_limit_remaining",
                                       "Remaining GitHub API requests", multiprocess_mode="mostrecent")


@functools.cache
def metrics() -> BinderHubMetrics:
    return BinderHubMetrics()


class _DefaultRegistry(Collector):
    """Shows the process's default registry through an app's own registry."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()


def init_app(app: Flask) -> None:
    """``/metrics`` for this app: multiprocess-aware under gunicorn, per-app registry otherwise."""
    metrics()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        GunicornInternalPrometheusMetrics(app, group_by="endpoint")
    else:
        registry = CollectorRegistry(auto_describe=True)
        registry.register(_DefaultRegistry())
        PrometheusMetrics(app, registry=registry, group_by="endpoint")


def start_worker_server(address: str, port: int) -> None:
    """A worker's own ``/metrics`` (cluster deployments scrape each worker pod)."""
    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    start_http_server(port, addr=address, registry=registry)


def mark_process_dead(pid: int) -> None:
    """Drop a dead process's live gauges (gunicorn ``child_exit``, Celery child shutdown)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
