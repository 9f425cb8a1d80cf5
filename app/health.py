"""``/health`` and ``/versions``: what probes and federation redirectors read.

``/health`` answers in BinderHub's shape (``ok`` and a ``checks`` list of
``service``/``ok``), 503 when a check fails.  Results are cached for
``health_cache_seconds`` so frequent probes do not hammer Redis, the registry
or the engine.

The GitHub API is someone else's service and costs rate limit, so it is not
probed on every check: a resolve that could not reach it (or was refused)
marks an outage in Redis, and only while that mark stands does ``/health`` ask
GitHub's ``/rate_limit`` (which does not count against the limit) whether it
is back; a good answer clears the mark (a resolve never does, so launches pay
nothing for this).  The chart's probes use ``/versions``,
so an outage elsewhere never takes Bindery's pods out of service.

The network user code runs in is reported with a warning where it shares this machine's
(``launch_network`` / ``build_network`` = ``host``, or no egress rules).

The build and launch workers are checked by their heartbeats (tasks/worker_heartbeat.py):
a queue with no worker heard from lately makes ``/health`` 503 with that check named, so a
monitor sees a dead worker before users do.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from typing import Any

import requests
from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from app import keys
from app.extensions import redis_client
from app.outages import clear_outage, has_outage
from providers.http import github_headers
from tasks import backends, worker_heartbeat
from tasks.backends import user_network, warm_pool

bp = Blueprint("health", __name__)

VERSION = "0.1.0"
_cache: dict[str, Any] = {"at": 0.0, "result": None}
_cache_lock = threading.Lock()


@bp.route("/versions")
def versions() -> ResponseReturnValue:
    # open to every origin (app/cors.py), as BinderHub's: federation redirectors read it
    return jsonify({"bindery": VERSION, "builder": f"repo2docker {metadata.version('jupyter-repo2docker')}"})


def _check(service: str, probe: Any) -> dict[str, Any]:
    try:
        extra = probe() or {}
        return {"service": service, "ok": extra.pop("ok", True), **extra}
    except Exception as exc:  # noqa: BLE001 - a failing dependency is a result, not an error
        return {"service": service, "ok": False, "error": type(exc).__name__}


def _registry(config: dict[str, Any]) -> dict[str, Any]:
    if config["registry_url"]:
        status = requests.get(f"{config['registry_url'].rstrip('/')}/v2/",
                              timeout=config["registry_timeout"]).status_code
        return {"ok": status in (200, 401)}
    backends.engine_client().ping()
    return {}


def _quota(config: dict[str, Any]) -> dict[str, Any]:
    servers = backends.launcher(config).running()
    builds = sum(1 for _ in redis_client.client.scan_iter(keys.BUILD_LOCK.glob, count=1000))
    quota = config["quota_total"]
    return {"servers": servers, "builds": builds, "quota": quota or None, "ok": not quota or servers < quota}


def _github(config: dict[str, Any]) -> dict[str, Any]:
    if not has_outage("gh"):
        return {}
    headers, auth = github_headers(config)
    url = f"{str(config['github_api_url']).rstrip('/')}/rate_limit"
    if requests.get(url, headers=headers, auth=auth, timeout=config["provider_timeout"]).status_code != 200:
        return {"ok": False}
    clear_outage("gh")  # it answers again: stop asking
    return {}


def _user_network(config: dict[str, Any]) -> dict[str, Any]:
    said = user_network.warnings(config)
    return {"launch": config["launch_network"], "build": config["build_network"],
            **({"warnings": said} if said else {})}


def _workers(queue: str) -> dict[str, Any]:
    workers = worker_heartbeat.alive(redis_client.client, queue)
    return {"workers": workers, "ok": workers > 0}


def run_checks() -> dict[str, Any]:
    """Every check at once, so a slow dependency (a busy engine listing containers) costs the
    probe its own time, not the sum of all of them."""
    config = current_app.config["BINDERY"]
    probes: list[tuple[str, Any]] = [
        ("Redis", lambda: {"ok": bool(redis_client.client.ping())}),
        ("Registry" if config["registry_url"] else "Engine image store", lambda: _registry(config)),
        ("Launcher", lambda: backends.launcher(config).ping()),
        ("Server quota", lambda: _quota(config)),
        ("Build worker", lambda: _workers("build")),
        ("Launch worker", lambda: _workers("launch")),
    ]
    # what user code can reach (tasks/backends/user_network.py): warnings, never a failing check
    probes.append(("User code network", lambda: _user_network(config)))
    if warm_pool.enabled(config):  # idle pooled servers per image (never failing: a pool is an extra)
        probes.append(("Warm pool", lambda: warm_pool.summary(config, redis_client.client)))
    if "gh" in config["enabled_providers"]:
        probes.append(("GitHub API", lambda: _github(config)))
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def run(service: str, probe: Any) -> dict[str, Any]:
        with app.app_context():
            return _check(service, probe)

    with ThreadPoolExecutor(len(probes), thread_name_prefix="health") as pool:
        checks = list(pool.map(lambda item: run(*item), probes))
    return {"ok": all(check["ok"] for check in checks), "checks": checks}


@bp.route("/health")
def health() -> ResponseReturnValue:
    ttl = current_app.config["BINDERY"]["health_cache_seconds"]
    with _cache_lock:
        if _cache["result"] is None or time.monotonic() - _cache["at"] > ttl:
            _cache["result"], _cache["at"] = run_checks(), time.monotonic()
        result = _cache["result"]
    return jsonify(result), 200 if result["ok"] else 503
