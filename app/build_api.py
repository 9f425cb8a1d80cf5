"""``GET /build/<provider>/<spec>``: BinderHub's event-stream API.

The view validates, records the launch, queues the chain and streams; it never
waits on pipeline work.  At the door: length limits, banned networks, build
tokens, the per-address rate limit of new launches and the open-stream limit.
Errors do not change the HTTP status: they are a ``failed`` event, because
EventSource cannot read status codes.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, current_app, request
from flask.typing import ResponseReturnValue
from flask_sse import Message

from app import auth, build_tokens, launches, rate_limit, request_limits, stream_limit
from app.client_address import client_key
from app.errors import BinderyError, RateLimited, failed_event
from app.extensions import events, redis_client
from app.network_bans import check_client_allowed
from app.rawpath import raw_spec
from app.sse import KEEPALIVE, parse_event_id, single_stream
from providers import get_provider
from tasks import launch_record

bp = Blueprint("build_api", __name__)

_TRUE = {"1", "true", "yes", "on"}


def _failed_stream(error: BinderyError) -> Response:
    def body() -> Iterator[str]:
        yield KEEPALIVE
        yield str(Message(failed_event(error)))

    return single_stream(body())


def _admit_stream() -> stream_limit.StreamSlot | None:
    """A place among the client's open streams (None when unlimited); 429 when all are taken."""
    settings = current_app.config["BINDERY"]
    limit = settings["max_streams_per_ip"]
    if not limit:
        return None
    slot, count = stream_limit.admit(redis_client.client, client_key(), limit,
                                     stream_limit.lease_seconds(settings["keepalive_interval"]))
    if slot is None:
        raise RateLimited(f"Too many open event streams from your address: {count} are open and this "
                          f"Bindery allows {limit} at once. Close other launch pages, or wait for their "
                          "launches to finish.", open_streams=count)
    return slot


def _count_launch(headers: dict[str, str]) -> None:
    """Count a new launch against the client's rate limit; 429 saying when to retry when over it."""
    settings = current_app.config["BINDERY"]
    if not settings["rate_limit"]:
        return
    window = rate_limit.hit(redis_client.client, client_key(), settings["rate_limit"],
                            settings["rate_limit_period"])
    headers.update(window.headers())
    if not window.allowed:
        error = rate_limit.refusal(window)
        headers["Retry-After"] = str(error.details["retry_after"])
        raise error


def _request_origin() -> str:
    """The page a launch came from, for launch events (BinderHub's ``request_origin``): the Origin
    header, else Sec-Fetch-Site (``same-origin`` from our own page), else empty (scripts)."""
    return (request.headers.get("Origin") or request.headers.get("Sec-Fetch-Site") or "")[:200]


def _held(response: Response, slot: stream_limit.StreamSlot | None) -> Response:
    if slot is not None:
        response.response = slot.hold(response.response)  # type: ignore[arg-type]
    return response


@bp.route("/build/<provider>/<path:spec>")
def build(provider: str, spec: str) -> ResponseReturnValue:
    if "text/event-stream" not in request.headers.get("Accept", ""):
        raise BinderyError("This endpoint streams Server-Sent Events: request it with "
                           "'Accept: text/event-stream'.", 406)
    spec = raw_spec(f"/build/{provider}/", spec)
    headers: dict[str, str] = {}
    slot = None
    try:
        request_limits.check_url()
        request_limits.check_spec(spec)
        check_client_allowed()
        user = auth.require_user(f"{request.host_url}v2/{provider}/{spec}")
        resume = parse_event_id(request.headers.get("Last-Event-ID") or request.args.get("lastEventId"))
        if resume and launch_record.belongs_to(resume[0], provider, spec):
            # A reconnect is not a new launch: no token needed, not counted; it is an open stream.
            slot = _admit_stream()
            return _held(events.response(*resume), slot)
        token = request.args.get("build_token", "")
        if token:
            build_tokens.verify(token, provider, spec)  # a valid token skips the rate limit
        slot = _admit_stream()
        if not token:
            _count_launch(headers)
        get_provider(provider, spec, current_app.config["BINDERY"])  # refuses a bad spec now
        launch_id = launches.start(provider, spec,
                                   build_only=request.args.get("build_only", "").lower() in _TRUE,
                                   origin=request.host_url, request_origin=_request_origin(), user=user)
    except BinderyError as error:
        if slot is not None:
            slot.release()
        response = _failed_stream(error)
        response.headers.update(headers)
        return response
    except BaseException:
        if slot is not None:
            slot.release()  # not left to its lease
        raise
    response = _held(events.response(launch_id), slot)
    response.headers.update(headers)
    return response
