"""Logging for web and workers: one line per record, JSON by default.

Each line carries the launch id and image of the launch being worked on (set by
the task base class and the build API through :func:`launch_context`), so one
launch can be followed across processes.  Every configured secret is masked in
every line, whatever logged it.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from app.config import ConfigSchema

_launch: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar("bindery_launch", default=())
MASK = "***"


@contextmanager
def launch_context(launch_id: str | None, image: str | None = None) -> Iterator[None]:
    token = _launch.set(tuple((k, v) for k, v in (("launch_id", launch_id), ("image", image)) if v))
    try:
        yield
    finally:
        _launch.reset(token)


class _LaunchFields(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _launch.get():
            setattr(record, key, value)
        return True


class _Masking(logging.Formatter):
    """Wraps a formatter and masks secrets in the finished line (messages, args, tracebacks)."""

    def __init__(self, inner: logging.Formatter, secrets: list[str]) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        for secret in self.secrets:
            line = line.replace(secret, MASK)
        return line


def secrets_of(config: dict[str, Any]) -> list[str]:
    """The values of every setting the schema marks secret (and their parts, e.g. user:password)."""
    values: list[str] = []
    for name, field in ConfigSchema().fields.items():
        value = config.get(name)
        if field.metadata.get("secret") and isinstance(value, str) and value:
            values.append(value)
            values.extend(part for part in value.split(":", 1)[1:])
        elif field.metadata.get("secret_in_url") and isinstance(value, str) and value:  # e.g. redis_url
            password = urllib.parse.urlsplit(value).password
            if password:
                values.extend({password, urllib.parse.unquote(password)})
        elif field.metadata.get("secret") and isinstance(value, dict):  # e.g. git_credentials
            values.extend(str(entry["password"]) for entry in value.values()
                          if isinstance(entry, dict) and entry.get("password"))
            values.extend(entry for entry in value.values() if isinstance(entry, str) and entry)  # prebuild_tokens
    return values


def configure_logging(config: dict[str, Any]) -> None:
    """Replace the root handlers; called once per process by the app factory."""
    if config["log_format"] == "json":
        inner: logging.Formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "asctime": "time"},
        )
    else:
        inner = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Masking(inner, secrets_of(config)))
    handler.addFilter(_LaunchFields())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "bindery", False):
            root.removeHandler(old)
    handler.bindery = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Celery's per-task lines ("received", "succeeded in"): the log_each_task setting
    for name in ("celery.worker.strategy", "celery.app.trace"):
        logging.getLogger(name).setLevel(logging.INFO if config["log_each_task"] else logging.WARNING)
