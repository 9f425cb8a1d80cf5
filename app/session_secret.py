"""Secrets made once and kept in the data dir: the session key, the embedded Redis's password.

Every process on the machine must use the same value, so the first one to need it
creates the file (atomically, readable by its owner only) and the others read it.
A cluster sets ``session_secret`` and ``redis_url`` instead (the chart keeps them in
its Secret).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_NAME = "session_secret"
MIN_LENGTH = 32


def ensure_session_secret(data_dir: str | os.PathLike[str]) -> str:
    """The key in ``<data_dir>/session_secret``, created with 0600 permissions if it is missing."""
    return ensure_secret(data_dir, FILE_NAME, "session_secret")


def ensure_secret(directory: str | os.PathLike[str], name: str, setting: str) -> str:
    """The secret in ``<directory>/<name>``, created with 0600 permissions if it is missing.

    ``setting``: what an operator sets instead, named when the file holds nothing usable.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if not path.exists():
        # Written aside, then linked into place: the link fails if another process got there
        # first, and no process ever reads a half-written key.
        draft = folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_text(encoding="ascii").strip()
    if len(key) < MIN_LENGTH:
        raise RuntimeError(f"{path} holds no usable secret (under {MIN_LENGTH} characters); "
                           f"delete it to have a new one made, or set {setting}")
    return key
