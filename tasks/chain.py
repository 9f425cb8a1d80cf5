"""How the steps are put together.  A cached launch queues resolve, check and launch only."""

from __future__ import annotations

from typing import Any

from celery import chain
from celery.canvas import Signature


def launch_chain(launch: dict[str, Any]) -> Signature:
    from tasks.check_registry import check_registry
    from tasks.resolve_ref import resolve_ref

    return chain(resolve_ref.s(launch), check_registry.s())


def build_chain(launch: dict[str, Any], *, push: bool) -> Signature:
    """build → (push) → launch; push only when there is a registry to push to."""
    from tasks.build import build
    from tasks.launch import launch as launch_step
    from tasks.push import push as push_step

    steps = [build.s(launch)] + ([push_step.s()] if push else []) + [launch_step.s()]
    return chain(*steps)
