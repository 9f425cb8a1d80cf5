"""Whole-system tests: each starts a real Bindery (gunicorn + Celery workers + Redis, tests/stack.py).

``make_module_stack`` makes the Stacks a module's tests share (a module's ``stack`` fixture calls it
with the settings those tests need); ``make_stack`` makes the Stacks of one test.  Both are the same
``StackFactory`` and stop exactly the Stacks they started when their scope ends.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stack import StackFactory, wait_stopped


@pytest.fixture(scope="module")
def make_module_stack(request: pytest.FixtureRequest,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackFactory]:
    """Stacks shared by the tests of one module."""
    factory = StackFactory(request, tmp_path_factory)
    yield factory
    factory.stop_all()


@pytest.fixture
def make_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackFactory]:
    """Stacks of one test."""
    factory = StackFactory(request, tmp_path_factory)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session", autouse=True)
def stacks_stopped() -> Iterator[None]:
    """At the end of the session, every Stack is stopped (factories stop theirs in the background)."""
    yield
    wait_stopped()
