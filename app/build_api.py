"""``GET /build/<provider>/<spec>``: BinderHub's event-stream API.

The view validates, records the launch, queues the chain and streams; it never
waits on pipeline work.  Errors do not change the HTTP status: they are a
``failed`` event, because EventSource cannot read status codes.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, current_app, request
from flask.typing import ResponseReturnValue
from flask_sse import Message

from app import launches
from app.errors import BinderyError
from app.extensions import events
from app.rawpath import raw_spec
from app.sse import KEEPALIVE, parse_event_id, single_stream
from providers import get_provider

bp = Blueprint("build_api", __name__)

_TRUE = {"1", "true", "yes", "on"}


def _failed_stream(error: BinderyError) -> ResponseReturnValue:
    def body() -> Iterator[str]:
        yield KEEPALIVE
        yield str(Message({"phase": "failed", "message": error.message + "\n",
                           "status_code": error.status_code}))

    return single_stream(body())


@bp.route("/build/<provider>/<path:spec>")
def build(provider: str, spec: str) -> ResponseReturnValue:
    if "text/event-stream" not in request.headers.get("Accept", ""):
        raise BinderyError("This endpoint streams Server-Sent Events: request it with "
                           "'Accept: text/event-stream'.", 406)
    spec = raw_spec(f"/build/{provider}/", spec)
    resume = parse_event_id(request.headers.get("Last-Event-ID") or request.args.get("lastEventId"))
    if resume and launches.belongs_to(resume[0], provider, spec):
        return events.response(*resume)
    try:
        get_provider(provider, spec, current_app.config["BINDERY"])  # refuses a bad spec now
        launch_id = launches.start(provider, spec,
                                   build_only=request.args.get("build_only", "").lower() in _TRUE,
                                   origin=request.host_url)
    except BinderyError as error:
        return _failed_stream(error)
    return events.response(launch_id)
