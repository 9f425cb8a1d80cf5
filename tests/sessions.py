"""Session cookies signed as Bindery's Flask signs them, for the authentication tests."""

from __future__ import annotations

from typing import Any
from unittest import mock

import itsdangerous
from flask import Flask


def session_cookie(secret: str, data: dict[str, Any], at: float | None = None) -> str:
    """A session cookie holding ``data``, signed with ``secret``, dated ``at`` (default: now)."""
    signer = Flask(__name__)
    signer.secret_key = secret
    serializer = signer.session_interface.get_signing_serializer(signer)  # type: ignore[attr-defined]
    assert serializer is not None
    if at is None:
        return str(serializer.dumps(data))
    with mock.patch.object(itsdangerous.timed.time, "time", lambda: at):
        return str(serializer.dumps(data))
