"""The Task class every Bindery task uses: app context, payload checks, failures as events."""

from __future__ import annotations

import logging
from typing import Any

import celery
from celery.exceptions import Ignore, Reject, Retry

from app.errors import BinderyError
from app.logging_setup import launch_context
from tasks.outcomes import launch_failed
from tasks.payload import load_launch
from tasks.worker_lease import may_run

log = logging.getLogger(__name__)


class BinderyTask(celery.Task):
    """Runs in the Flask app context; a BinderyError becomes the launch's ``failed`` event.

    Steps take the launch payload as their first argument, so a failure can always
    be reported on the launch's own channel, and never as a traceback.
    """

    acks_late = True
    reject_on_worker_lost = True
    #: Runs on the launch queue: skipped once its launch has ended (cancelled, ready), and
    #: counted when delivered again after its worker died (tasks/worker_lease.py).
    launch_queue_step = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """A message arrived: check its payload once, and that its launch may still run."""
        app = self.app.flask_app  # type: ignore[attr-defined]
        launch = load_launch(args[0]) if args and isinstance(args[0], dict) else None
        ids = (launch["id"], launch.get("image")) if launch else (None, None)
        with app.app_context(), launch_context(*ids):
            if launch and self.launch_queue_step and not may_run(self.request, launch):
                return None
            return self._reporting(launch, super().__call__, *args, **kwargs)

    def hand_over(self, launch: dict[str, Any]) -> Any:
        """Run this step inside the one running now (tasks/chain.py), with its failures reported the same way.

        The message's payload was checked and its launch found still running when it arrived
        (``__call__``), and the app context is the caller's: a hand-over is a function call,
        not another delivery, so none of that is done again.
        """
        with launch_context(launch["id"], launch.get("image")):
            return self._reporting(launch, self.run, launch)

    def _reporting(self, launch: dict[str, Any] | None, call: Any, *args: Any, **kwargs: Any) -> Any:
        """``call``, with a BinderyError (or anything unexpected) becoming the launch's ``failed`` event."""
        try:
            return call(*args, **kwargs)
        except (Retry, Ignore, Reject):
            raise
        except BinderyError as error:
            log.info("launch %s failed in %s: %s", launch and launch["id"], self.name, error.message)
            if launch:
                self.report_failure(launch, error)
            return None
        except Exception as exc:
            # Steps may run inside one another (tasks/chain.py): report once, innermost.
            if launch and not getattr(exc, "bindery_reported", False):
                log.exception("launch %s: unexpected error in %s", launch["id"], self.name)
                self.report_failure(launch, BinderyError(
                    f"Internal error in step {self.name.rsplit('.', 1)[-1]}; it has been logged. "
                    "Please try again."))
                exc.bindery_reported = True  # type: ignore[attr-defined]
            raise

    def report_failure(self, launch: dict[str, Any], error: BinderyError) -> None:
        """How this step's failure reaches the user: by default the launch ends ``failed``."""
        launch_failed(launch, error)
