"""Where a waiting user stands: recent build and launch durations, and the build queue.

Durations are kept in Redis as short capped lists, one per repository and one for
all repositories, so an estimate is the median of what really happened lately.
The build queue is Celery's Redis list ``build``: kombu pushes on the left and
workers pop on the right, so the messages to the right of ours go first.
"""

from __future__ import annotations

import base64
import binascii
import json
import statistics
from typing import Any, Literal

import redis

from app import keys
from app.extensions import redis_client

Kind = Literal["build", "launch"]
KINDS: tuple[Kind, ...] = ("build", "launch")
BUILD_QUEUE = "build"
REPO_SAMPLES = 20
GLOBAL_SAMPLES = 200
REPO_TTL = 30 * 86400
QUEUE_SCAN_LIMIT = 1000  # messages read from the head of the queue; deeper than this is "far"


def _client(client: redis.Redis | None) -> redis.Redis:
    if client is not None:
        return client
    return redis_client.client


def _repo_key(kind: str, repo_url: str) -> str:
    return keys.TIMINGS_REPO(kind, keys.digest(repo_url, 24))


def _global_key(kind: str) -> str:
    return keys.TIMINGS_ALL(kind)


def record(kind: Kind, repo_url: str, seconds: float, client: redis.Redis | None = None) -> None:
    """Remember one duration for this repository and for all; never fails the caller's step."""
    try:
        pipe = _client(client).pipeline(transaction=False)
        queue_record(pipe, kind, repo_url, seconds)
        pipe.execute()
    except redis.RedisError:
        pass  # an estimate is a nicety; a build or launch must not fail for it


def queue_record(pipe: Any, kind: Kind, repo_url: str, seconds: float) -> None:
    """:func:`record`'s commands added to the caller's pipeline (its results are for nobody)."""
    if kind not in KINDS or not seconds >= 0:
        raise ValueError(f"kind must be one of {KINDS} and seconds >= 0")
    value = f"{seconds:.3f}"
    pipe.lpush(_repo_key(kind, repo_url), value)
    pipe.ltrim(_repo_key(kind, repo_url), 0, REPO_SAMPLES - 1)
    pipe.expire(_repo_key(kind, repo_url), REPO_TTL)
    pipe.lpush(_global_key(kind), value)
    pipe.ltrim(_global_key(kind), 0, GLOBAL_SAMPLES - 1)


def _median(values: list[Any]) -> float | None:
    numbers = [float(v) for v in values]
    return round(statistics.median(numbers), 1) if numbers else None


def estimate(repo_url: str, client: redis.Redis | None = None) -> dict[str, Any]:
    """Per kind: the median seconds of this repository's recent runs, else of all repositories.

    ``{"build": {"seconds": 42.0, "samples": 5, "basis": "repository"}, "launch": {...}}``;
    basis is ``"repository"``, ``"all"`` or None (no history at all, seconds None).
    """
    redis_conn = _client(client)
    pipe = redis_conn.pipeline(transaction=False)
    for kind in KINDS:
        pipe.lrange(_repo_key(kind, repo_url), 0, -1)
        pipe.lrange(_global_key(kind), 0, -1)
    found = pipe.execute()
    result: dict[str, Any] = {}
    for index, kind in enumerate(KINDS):
        own, every = found[2 * index], found[2 * index + 1]
        samples, basis = (own, "repository") if own else (every, "all") if every else ([], None)
        result[kind] = {"seconds": _median(samples), "samples": len(samples), "basis": basis}
    return result


def _message_launch(raw: str) -> tuple[str, dict[str, Any]] | None:
    """(task name, launch payload) of one kombu message in the queue, or None if unreadable."""
    try:
        message = json.loads(raw)
        task = message.get("headers", {}).get("task", "")
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        launch = args[0] if args and isinstance(args[0], dict) else {}
        return task, launch
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
        return None


def queue_position(launch_id: str, repo_url: str, client: redis.Redis | None = None) -> dict[str, Any]:
    """Where this launch's build waits: ``{"queued", "position", "length"}``.

    ``position`` is 1 when ours is the next build to start (builds already running are
    not counted); ``queued`` is False when no build of ours (or of the same repository,
    which we would share) is waiting.
    """
    redis_conn = _client(client)
    length = int(redis_conn.llen(BUILD_QUEUE))
    head = redis_conn.lrange(BUILD_QUEUE, -QUEUE_SCAN_LIMIT, -1)  # oldest last
    builds_ahead = 0
    for raw in reversed(head):
        parsed = _message_launch(raw if isinstance(raw, str) else raw.decode())
        if parsed is None or parsed[0] != "bindery.build":
            continue
        launch = parsed[1]
        if launch.get("id") == launch_id or launch.get("repo_url") == repo_url:
            return {"queued": True, "position": builds_ahead + 1, "length": length}
        builds_ahead += 1
    return {"queued": False, "position": None, "length": length}


def global_median(kind: Kind, client: redis.Redis | None = None) -> float | None:
    """Median seconds of recent runs of every repository (what a stranger's build costs)."""
    return _median(_client(client).lrange(_global_key(kind), 0, -1))


def eta_seconds(position: dict[str, Any], estimates: dict[str, Any], build_ahead: float | None) -> float | None:
    """Seconds until ready: builds ahead of ours (``build_ahead`` each), ours, then the launch."""
    build, launch = estimates["build"]["seconds"], estimates["launch"]["seconds"]
    if build is None and launch is None:
        return None
    total = (build or 0.0) + (launch or 0.0)
    if position["queued"] and position["position"] > 1:
        total += (position["position"] - 1) * (build_ahead or build or 0.0)
    return round(total, 1)
