"""Cross-origin use of the API (``cors_allow_origin``), in one place for every route.

Documentation sites (thebe, Jupyter Book, BinderHub's JS client) open ``/build`` from
their own origin.  The browser lets their script read the answer only when it carries
``Access-Control-Allow-Origin``, and sends a preflight ``OPTIONS`` first when the request
has headers of its own (``Cache-Control`` from EventSource polyfills, ``Last-Event-ID``
on a reconnect, ``Authorization``/``X-Xsrftoken`` from ``@jupyterhub/binderhub-client``).
Flask answers every ``OPTIONS`` itself (``provide_automatic_options``); the hook below
adds the headers to those answers and to every other answer of the API paths, errors
included, as BinderHub's default headers do.

The value is sent as configured (one origin or ``*``), never echoed from the request,
so answers do not vary by origin and caches need no ``Vary``.  No
``Access-Control-Allow-Credentials``: Bindery has no cookies or sessions a foreign page
could ride on.  ``/versions`` answers ``*`` when the setting is off, as BinderHub's does
(federation redirectors read it from other origins).
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request

#: The paths a page on another origin may use: the event stream, the JSON API, the probes
#: and the build log (whose text form is what a page shows).
PATHS = ("/build/", "/api/", "/logs/")
EXACT = ("/health", "/versions")
#: Request headers a cross-origin client may send: what EventSource polyfills (BinderHub's
#: ``cache-control``), reconnects and binderhub-client add.  Bindery reads only Last-Event-ID.
ALLOW_HEADERS = "cache-control, last-event-id, authorization, x-xsrftoken"
ALLOW_METHODS = "GET, HEAD, OPTIONS"
#: Rate-limit headers of the build stream (app/rate_limit.py) a page's script may read.
EXPOSE_HEADERS = "retry-after, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset"
#: Seconds a browser may reuse a preflight's answer.
MAX_AGE = "600"
#: What ``/versions`` answers with the setting off.
ALWAYS_OPEN = {"/versions": "*"}


def covers(path: str) -> bool:
    """Whether ``path`` is one of the API paths cross-origin pages may use."""
    return path in EXACT or path.startswith(PATHS)


def allowed_origin(path: str, setting: str) -> str:
    """The Access-Control-Allow-Origin value for ``path`` (empty: send none)."""
    if not covers(path):
        return ""
    return setting or ALWAYS_OPEN.get(path, "")


def add_headers(response: Response) -> Response:
    """after_request: the CORS headers on API answers and on preflights, when allowed."""
    origin = allowed_origin(request.path, current_app.config["BINDERY"]["cors_allow_origin"])
    if not origin:
        return response
    headers = response.headers
    headers["Access-Control-Allow-Origin"] = origin
    headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    if request.method == "OPTIONS":
        headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        headers["Access-Control-Max-Age"] = MAX_AGE
    return response


def init_app(app: Flask) -> None:
    """Register the hook; the setting is read per request, so tests may change it."""
    app.after_request(add_headers)
