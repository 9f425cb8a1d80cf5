"""The order of the pipeline: every path a launch can take, and nowhere else.

::

    web ── start ──▶ resolve_ref
    resolve_ref ──── resolved ─────────▶ check_registry
    check_registry ─ image_found ──────▶ launch
                   ─ build_needed ─────▶ build ─▶ push   (build queue; push only with a registry)
                                         and attach      (we follow our own build, like everyone)
                   ─ build_elsewhere ──▶ attach          (someone else builds it: follow theirs)
    attach ───────── built ────────────▶ launch
                   ─ last_good_found ──▶ launch          (the build failed; launch_last_good_image)
                   ─ build_stopped ────▶ check_registry  (its worker died: look again, maybe build)
    any step ─────── BinderyError ─────▶ ``failed`` event, the launch ends (tasks/base.py)

A launch also ends without a step: cancelled by the abandon sweep when nobody reads
it (tasks/beat/abandon.py), or given up after its worker died ``launch_crash_retries``
times (tasks/worker_lease.py).  ``build_only`` launches end in ``launch`` with the image.

Steps call these transitions; this module names the next step by its Celery task name and
imports no step.  Steps on the gevent ``launch`` queue hand over inside the same worker (a
queue hop costs more than a cached launch's own work), so a cached launch is one message.
The build chain ends at the image: the launches following it (attach) launch, so a
re-delivered build never starts a server.
"""

from __future__ import annotations

from typing import Any

from celery import chain, current_app, signature
from celery.canvas import Signature

RESOLVE_REF = "bindery.resolve_ref"
CHECK_REGISTRY = "bindery.check_registry"
ATTACH = "bindery.attach"
BUILD = "bindery.build"
PUSH = "bindery.push"
LAUNCH = "bindery.launch"

Launch = dict[str, Any]


def start(launch: Launch) -> Signature:
    """What the web queues: the first step, by name (the web never imports a step)."""
    return signature(RESOLVE_REF, args=(launch,))


def resolved(launch: Launch) -> None:
    """The ref is a commit and the image has a name: is it there?"""
    _run(CHECK_REGISTRY, launch)


def image_found(launch: Launch) -> None:
    _run(LAUNCH, launch)


def build_needed(launch: Launch, *, push: bool) -> None:
    """We hold the build lock: queue the build (and push), then follow it like any waiting launch."""
    build = signature(BUILD, args=(launch,))
    (chain(build, signature(PUSH)) if push else build).apply_async()
    _run(ATTACH, launch)


def build_elsewhere(launch: Launch) -> None:
    """Another launch holds the build lock: follow its build from a message of our own."""
    signature(ATTACH, args=(launch,)).apply_async()


def built(launch: Launch) -> None:
    _run(LAUNCH, launch)


def last_good_found(launch: Launch) -> None:
    """The build failed, and the repository's last image that built is launched instead."""
    _run(LAUNCH, launch)


def build_stopped(launch: Launch) -> None:
    """The build we followed ended without a word: start over from the registry check."""
    _run(CHECK_REGISTRY, {**launch, "build_id": None})


def _run(name: str, launch: Launch) -> Any:
    """Run a launch-queue step here, inside the current task (same queue, same retries).

    A hand-over (tasks/base.py), not a call of the task: the payload was checked and the
    launch found running when the message arrived, so a cached launch pays for that once.
    """
    tasks = current_app.tasks
    if name not in tasks:  # a process that never imported the steps (a test, a shell)
        current_app.loader.import_default_modules()
    task = tasks[name]
    hand_over = getattr(task, "hand_over", None)
    return hand_over(launch) if hand_over is not None else task(launch)
