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


def test_a_hand_over_runs_the_step_without_checking_the_payload_or_the_launch_again(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """One message, one payload check and one end-claim look-up, however many steps it runs."""
    from tasks import base

    celery = app.extensions["celery"]
    checks: list[str] = []
    monkeypatch.setattr(base, "load_launch", lambda payload: checks.append("payload") or payload)
    monkeypatch.setattr(base, "may_run", lambda request, launch: checks.append("may_run") or True)
    steps: list[str] = []

    @celery.task(name="bindery.test_second")
    def second(launch: dict) -> str:
        steps.append("second")
        return "done"

    @celery.task(name="bindery.test_first")
    def first(launch: dict) -> str:
        steps.append("first")
        return chain._run("bindery.test_second", launch)

    assert first({"id": "a" * 32}) == "done"
    assert steps == ["first", "second"] and checks == ["payload", "may_run"]


def test_a_step_handed_over_reports_its_failure_once_on_the_launch_s_channel(app: Flask) -> None:
    from app.errors import LaunchError
    from app.extensions import events

    celery = app.extensions["celery"]

    @celery.task(name="bindery.test_failing")
    def failing(launch: dict) -> None:
        raise LaunchError("the hub said no", 503)

    @celery.task(name="bindery.test_handing_over")
    def handing_over(launch: dict) -> None:
        chain._run("bindery.test_failing", launch)

    launch_id = "b" * 32
    handing_over({"id": launch_id, "provider": "gh", "spec": "o/r/HEAD", "created": 1.0})
    with app.app_context():
        published = [data for _, data in events.read(launch_id)]
    assert [(e["phase"], e["message"]) for e in published] == [("failed", "the hub said no\n")]
