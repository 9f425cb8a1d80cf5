"""Upper bounds on what a request may carry: the URL's length and the spec's.

Long input costs every step that touches it (providers, git, image names, logs)
and is never needed for a real repository, so it is refused at the door with a
message naming the limit.  The build API turns the refusal into a ``failed``
event; every other route answers 414 (a JSON body, or the error page).
"""

from __future__ import annotations

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestURITooLarge

from app.errors import BinderyError

#: The event-stream view reports its own refusals as ``failed`` events.
STREAM_ENDPOINT = "build_api.build"


def url_length() -> int:
    """Length of the URL as sent (path and query, percent-escapes intact)."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        return len(raw)
    query = request.environ.get("QUERY_STRING", "")
    return len(request.environ.get("PATH_INFO", "")) + (len(query) + 1 if query else 0)


def check_url() -> None:
    """Raise 414 when the URL is longer than ``max_url_length``."""
    limit = current_app.config["BINDERY"]["max_url_length"]
    length = url_length()
    if length > limit:
        raise BinderyError(f"The URL is {length} characters long; this Bindery accepts at most {limit}.", 414)


def check_spec(spec: str) -> None:
    """Raise 414 when the spec (as written in the URL) is longer than ``max_spec_length``."""
    limit = current_app.config["BINDERY"]["max_spec_length"]
    if len(spec) > limit:
        raise BinderyError(f"The repository spec is {len(spec)} characters long; this Bindery accepts "
                           f"at most {limit}.", 414)


def _check_url_before_request() -> None:
    if request.endpoint == STREAM_ENDPOINT:
        return
    try:
        check_url()
    except BinderyError as error:
        raise RequestURITooLarge(description=error.message) from None


def init_app(app: Flask) -> None:
    """Check every request's URL before its view runs."""
    app.before_request(_check_url_before_request)
