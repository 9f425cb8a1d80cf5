"""The loading page's event stream carries its build token, in real headless Chromium.

The app from its factory on a threaded WSGI server with an embedded Redis (no
Celery worker: launches stay ``waiting``, which is all this needs).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from tests.stack import collect, read_events


def test_the_event_stream_carries_a_valid_token_for_this_spec(page: Any, live_app: str) -> None:
    streams: list[str] = []
    page.on("request", lambda request: streams.append(request.url) if "/build/" in request.url else None)
    page.goto(f"{live_app}/v2/gh/org/project/HEAD")
    page.wait_for_function("document.body.dataset.phase === 'waiting'", timeout=30_000)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(streams[0]).query)
    token = query["build_token"][0]
    # The token is good for this spec (the stream starts a launch) and for no other.
    good = read_events(f"{live_app}/build/gh/org/project/HEAD?build_token={urllib.parse.quote(token)}", timeout=10)
    assert next(event for _, event in good if isinstance(event, dict))["phase"] == "waiting"
    good.close()
    refused = collect(f"{live_app}/build/gh/org/other/HEAD?build_token={urllib.parse.quote(token)}", timeout=10)
    assert refused[-1][1]["status_code"] == 403
    launch_id = page.evaluate("document.body.dataset.launchId")
    with page.expect_request(lambda request: "/build/" in request.url) as second:
        page.reload()  # resumes the same launch: lastEventId, and a fresh token
    resumed = urllib.parse.parse_qs(urllib.parse.urlsplit(second.value.url).query)
    assert resumed["lastEventId"][0].startswith(f"{launch_id}_")
    assert resumed["build_token"][0]
