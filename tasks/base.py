"""The Task class every Bindery task uses: app context, payload checks, failures as events."""

from __future__ import annotations

import logging
import time
from typing import Any

import celery
from celery.exceptions import Ignore, Reject, Retry

from app.errors import BinderyError
from app.logging_setup import launch_context
from tasks.payload import load_launch

log = logging.getLogger(__name__)

# Connection trouble with our own infrastructure is worth a retry; anything else is not.
TRANSIENT = (ConnectionError, TimeoutError)


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
        app = self.app.flask_app  # type: ignore[attr-defined]
        launch = load_launch(args[0]) if args and isinstance(args[0], dict) else None
        ids = (launch["id"], launch.get("image")) if launch else (None, None)
        with app.app_context(), launch_context(*ids):
            try:
                if launch and self.launch_queue_step:
                    from tasks.worker_lease import may_run

                    if not may_run(self.request, launch):
                        return None
                return super().__call__(*args, **kwargs)
            except (Retry, Ignore, Reject):
                raise
            except BinderyError as error:
                log.info("launch %s failed in %s: %s", launch and launch["id"], self.name, error.message)
                if launch:
                    self.report_failure(launch, error)
                return None
            except Exception as exc:
                # Steps may run inside one another (tasks.chain.proceed): report once, innermost.
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


def fail(error: BinderyError, *channels: str) -> None:
    """Publish a ``failed`` event (with the error's extra fields) on each channel."""
    from app.extensions import events

    event = {**error.to_dict(), "phase": "failed", "message": error.message.rstrip("\n") + "\n"}
    for channel in channels:
        events.publish(event, channel=channel)


def record_launch(launch: dict[str, Any], status: str) -> None:
    """A launch ended: BinderHub's launch metrics (its one place)."""
    from app.metrics import metrics

    figures = metrics()
    figures.launch_time.labels(status=status, retries="0").observe(max(0.0, time.time() - launch["created"]))
    figures.launch_count.labels(status=status, provider=launch["provider"],
                                repo=launch.get("repo_url") or launch["spec"]).inc()


def launch_failed(launch: dict[str, Any], error: BinderyError, *extra_channels: str) -> None:
    """The one way a launch ends in failure: its ``failed`` event and its metrics."""
    fail(error, launch["id"], *extra_channels)
    record_launch(launch, "failure")
