"""The spec exactly as it was sent, percent-escapes intact.

WSGI servers decode the path, which turns the git provider's escaped URL
(``https%3A%2F%2Fhost%2Frepo``) into extra slashes.  BinderHub's specs are
defined on the raw path, so views read it from the server's raw URI.
"""

from __future__ import annotations

import urllib.parse

from flask import request


def raw_spec(prefix: str, decoded: str) -> str:
    """The part of the raw request path after ``prefix``; ``decoded`` when the server hides it."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if not raw:
        return decoded
    path = raw.split("?", 1)[0]
    if "://" in path.split("/", 1)[0]:  # absolute-form request target
        path = urllib.parse.urlsplit(path).path
    return path[len(prefix):] if path.startswith(prefix) else decoded
