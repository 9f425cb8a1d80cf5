"""``GET /api/launches/<launch_id>/position``: where a waiting launch stands.

The loading page polls this while its launch waits: place in the build queue
and an estimated time to ready from recent durations (``tasks.timings``).
"""

from __future__ import annotations

import re

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from app.errors import NotFound
from providers import get_provider
from tasks import launch_record, timings

bp = Blueprint("where_api", __name__)

_LAUNCH_ID = re.compile(r"^[0-9a-f]{32}$")


@bp.route("/api/launches/<launch_id>/position")
def position(launch_id: str) -> ResponseReturnValue:
    request_path = launch_record.request_of(launch_id) if _LAUNCH_ID.match(launch_id) else None
    if request_path is None:
        raise NotFound("No such launch (it may have ended more than an hour ago).")
    provider, _, spec = request_path.partition("/")
    repo_url = get_provider(provider, spec, current_app.config["BINDERY"]).repo_url()
    place = timings.queue_position(launch_id, repo_url)
    estimates = timings.estimate(repo_url)
    eta = timings.eta_seconds(place, estimates, timings.global_median("build"))
    response = jsonify({**place, "estimate": estimates, "eta_seconds": eta})
    response.headers["Cache-Control"] = "no-store"
    return response
