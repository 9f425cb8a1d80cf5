"""The Task class every Bindery task uses: app context, payload checks, failures as events."""

from __future__ import annotations

import logging
from typing import Any

import celery
from celery.exceptions import Ignore, Reject, Retry

from app.errors import BinderyError
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

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        app = self.app.flask_app  # type: ignore[attr-defined]
        with app.app_context():
            launch = load_launch(args[0]) if args and isinstance(args[0], dict) else None
            try:
                return super().__call__(*args, **kwargs)
            except (Retry, Ignore, Reject):
                raise
            except BinderyError as error:
                log.info("launch %s failed in %s: %s", launch and launch["id"], self.name, error.message)
                if launch:
                    fail(launch, error, *self.extra_failure_channels(launch))
                return None
            except Exception as exc:
                # Steps may run inside one another (tasks.chain.proceed): report once, innermost.
                if launch and not getattr(exc, "bindery_reported", False):
                    log.exception("launch %s: unexpected error in %s", launch["id"], self.name)
                    fail(launch, BinderyError(f"Internal error in step {self.name.rsplit('.', 1)[-1]}; "
                                              "it has been logged. Please try again."),
                         *self.extra_failure_channels(launch))
                    exc.bindery_reported = True  # type: ignore[attr-defined]
                raise

    def extra_failure_channels(self, launch: dict[str, Any]) -> tuple[str, ...]:
        """Channels besides the launch's own that relay this step's failure (a shared build's)."""
        return ()


def fail(launch: dict[str, Any], error: BinderyError, *extra_channels: str) -> None:
    """Publish the one ``failed`` event of a launch (and of channels that relay it)."""
    from app.extensions import events

    event = {"phase": "failed", "message": error.message.rstrip("\n") + "\n",
             "status_code": error.status_code}
    for channel in (launch["id"], *extra_channels):
        events.publish(event, channel=channel)
