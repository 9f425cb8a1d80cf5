"""The key that signs session cookies when ``session_secret`` is not set: made once, kept in the data dir.

Every web process on the machine must sign with the same key, so the first one to
start creates the file (atomically, readable by its owner only) and the others read
it.  A cluster sets ``session_secret`` instead (the chart keeps it in its Secret).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_NAME = "session_secret"
MIN_LENGTH = 32


def ensure_session_secret(data_dir: str | os.PathLike[str]) -> str:
    """The key in ``<data_dir>/session_secret``, created with 0600 permissions if it is missing."""
    directory = Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILE_NAME
    if not path.exists():
        # Written aside, then linked into place: the link fails if another process got there
        # first, and no process ever reads a half-written key.
        draft = directory / f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
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
        raise RuntimeError(f"{path} holds no usable session key (under {MIN_LENGTH} characters); "
                           "delete it to have a new one made, or set session_secret")
    return key
