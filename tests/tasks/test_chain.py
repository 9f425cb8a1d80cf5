"""tasks/chain.py: each transition leads to the step its docstring draws, by the task's registered name."""

from __future__ import annotations

from typing import Any

import pytest
from celery.canvas import Signature, _chain
from flask import Flask

from app import create_app
from app.redis_server import EmbeddedRedis
from tasks import chain


@pytest.fixture
def app(redis_server: EmbeddedRedis) -> Flask:
    return create_app({"redis_url": redis_server.url, "launcher": "bench"})


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []
    monkeypatch.setattr(chain, "_run", lambda name, launch: seen.append((name, launch)))
    for kind in (Signature, _chain):  # a chain of two queues its own way
        monkeypatch.setattr(kind, "apply_async", lambda self, *a, **k: seen.append(("queued", self)))
    return seen


def test_every_step_the_chain_names_is_a_registered_task(app: Flask) -> None:
    celery = app.extensions["celery"]
    celery.loader.import_default_modules()
    names = {chain.RESOLVE_REF, chain.CHECK_REGISTRY, chain.ATTACH, chain.BUILD, chain.PUSH, chain.LAUNCH}
    assert names <= set(celery.tasks), names - set(celery.tasks)


def test_the_web_queues_resolve_ref_by_name() -> None:
    signature = chain.start({"id": "x"})
    assert (signature.task, signature.args) == (chain.RESOLVE_REF, ({"id": "x"},))


@pytest.mark.parametrize(("transition", "step"), [
    ("resolved", chain.CHECK_REGISTRY), ("image_found", chain.LAUNCH), ("built", chain.LAUNCH),
    ("last_good_found", chain.LAUNCH),
])
def test_same_queue_transitions_run_the_next_step_here(ran: list, transition: str, step: str) -> None:
    getattr(chain, transition)({"id": "x"})
    assert ran == [(step, {"id": "x"})]


def test_a_build_that_stopped_starts_over_without_its_build_id(ran: list) -> None:
    chain.build_stopped({"id": "x", "build_id": "b"})
    assert ran == [(chain.CHECK_REGISTRY, {"id": "x", "build_id": None})]


@pytest.mark.parametrize("push", [True, False])
def test_build_needed_queues_build_then_push_and_follows_it(ran: list, push: bool) -> None:
    chain.build_needed({"id": "x"}, push=push)
    (queued, work), following = ran
    assert queued == "queued" and following == (chain.ATTACH, {"id": "x"})
    tasks = [step.task for step in work.tasks] if push else [work.task]
    assert tasks == ([chain.BUILD, chain.PUSH] if push else [chain.BUILD])
    assert (work.tasks[0] if push else work).args == ({"id": "x"},)


def test_build_elsewhere_follows_from_a_message_of_its_own(ran: list) -> None:
    chain.build_elsewhere({"id": "x", "build_id": "b"})
    [(queued, signature)] = ran
    assert queued == "queued" and signature.task == chain.ATTACH and signature.args == ({"id": "x", "build_id": "b"},)
