"""How the steps are put together.

The web queues only the first step.  Steps that share the gevent ``launch``
queue hand over to the next one in the same worker (a queue hop costs more CPU
than a cached launch's own work); a hop to the ``build`` queue is a real Celery
chain, build → push → launch.  So a cached launch is one message, and never
queues a build or a push.  The build chain ends at the image: the launches
waiting for it (tasks/attach.py) launch, so a re-delivered build step never
starts a server.
"""

from __future__ import annotations

from typing import Any

from celery import Task, chain
from celery.canvas import Signature


def launch_chain(launch: dict[str, Any]) -> Signature:
    from tasks.resolve_ref import resolve_ref

    return resolve_ref.s(launch)


def proceed(step: Task, launch: dict[str, Any]) -> Any:
    """Run the next launch-queue step here, inside the current task (same queue, same retries)."""
    return step(launch)


def build_chain(launch: dict[str, Any], *, push: bool) -> Signature:
    """build → (push); push only when there is a registry to push to."""
    from tasks.build import build
    from tasks.push import push as push_step

    return chain(build.s(launch), push_step.s()) if push else build.s(launch)
