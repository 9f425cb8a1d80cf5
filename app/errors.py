"""One error format for the whole service.

Every failure a user can cause or see is a :class:`BinderyError`: it carries a
message that says what to fix and an HTTP-like status code.  The web layer turns
it into a JSON body or a ``failed`` event; the pipeline turns it into a
``failed`` event.  Nothing else ever reaches a client, so no traceback can leak.
"""

from __future__ import annotations

from typing import Any


class BinderyError(Exception):
    """A failure with a message meant for the person who asked."""

    status_code: int = 500

    def __init__(self, message: str, status_code: int | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        #: extra fields for the client, e.g. ``log_url`` of a failed build
        self.details = details
        if status_code is not None:
            self.status_code = status_code

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "status_code": self.status_code, **self.details}


def failed_event(error: BinderyError) -> dict[str, Any]:
    """The one ``failed`` event: the error's fields, a status code, a message ending in a newline."""
    return {**error.to_dict(), "phase": "failed", "message": error.message.rstrip("\n") + "\n"}


class SpecError(BinderyError):
    """The provider or spec in the URL cannot be used as given."""

    status_code = 400


class NotFound(BinderyError):
    """The repository or ref does not exist (or is not visible to us)."""

    status_code = 404


class ProviderError(BinderyError):
    """The repository host failed to answer usefully."""

    status_code = 502


class RateLimited(BinderyError):
    status_code = 429


class Banned(BinderyError):
    status_code = 403


class RegistryError(BinderyError):
    """The container registry could not be asked or refused us."""

    status_code = 503


class BuildError(BinderyError):
    status_code = 500


class LaunchError(BinderyError):
    status_code = 500


class EngineUnreachable(BinderyError):
    """The container engine (Docker-API: Docker or Podman) did not answer; try again later."""

    status_code = 503


class QuotaExceeded(BinderyError):
    status_code = 429


class ConfigError(Exception):
    """A setting is invalid; raised at start-up, naming the setting."""
