"""The build API's front door over real HTTP: rate limit, build tokens, bans, stream limit.

Real: gunicorn with two gevent web workers, Celery workers and an embedded Redis
(tests.stack.Stack).  Clients are told apart by X-Forwarded-For (the stack trusts
one proxy hop), each test using addresses of its own.  Launches that get through
point at a git URL nobody listens on, so the pipeline ends them at once.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import requests

from app import keys
from app.client_address import client_key
from tests.app.test_rate_limit import fresh_ip
from tests.stack import Stack, StackFactory, read_events

pytestmark = pytest.mark.integration

LIMIT, STREAMS = 3, 4
PERIOD = 3600
BANNED = {"192.0.2.0/24": "the Example Lab network"}
SPEC = "git/" + urllib.parse.quote("http://127.0.0.1:9/nothing.git", safe="") + "/main"


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory) -> Stack:
    return make_module_stack("front-door", {
        "web_workers": 2, "launcher": "bench", "trusted_proxy_hops": 1,
        "rate_limit": LIMIT, "rate_limit_period": PERIOD, "max_streams_per_ip": STREAMS,
        "keepalive_interval": 0.5, "ban_networks": BANNED, "launch_concurrency": 20,
    }, engine=False, registry=False)


def open_build(stack: Stack, ip: str, spec: str = SPEC, query: str = "", **headers: str) -> requests.Response:
    response = requests.get(f"{stack.url}/build/{spec}{query}", stream=True, timeout=30,
                            headers={"Accept": "text/event-stream", "X-Forwarded-For": ip, **headers})
    assert response.status_code == 200, response.text
    return response


def first_event(response: requests.Response) -> tuple[str | None, dict[str, Any]]:
    """The first event of a stream (keepalives skipped); the stream is closed after it."""
    event_id, data = None, None
    try:
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:])
            elif line == "" and data is not None:
                return event_id, data
    finally:
        response.close()
    raise AssertionError("the stream ended without an event")


def wait_released(stack: Stack, ip: str, timeout: float = 10) -> None:
    """Until the address holds no open stream: the server notices a closed one at its next keepalive."""
    db = redis.Redis.from_url(stack.redis.url)
    deadline = time.monotonic() + timeout
    while db.zcard(keys.STREAMS(client_key(ip))):
        assert time.monotonic() < deadline, "closed streams give their places back"
        time.sleep(0.1)


def page_token(stack: Stack, ip: str, spec: str = SPEC) -> str:
    page = requests.get(f"{stack.url}/v2/{spec}", headers={"X-Forwarded-For": ip}, timeout=10)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    found = re.search(r'id="launch-config">(.*?)</script>', page.text)
    assert found
    token: str = json.loads(found.group(1))["buildToken"]
    return token


def in_one_window(seconds: float = 120) -> None:
    """Wait for the next window if this one ends within ``seconds``: a test's counts must not reset."""
    left = PERIOD - time.time() % PERIOD
    if left < seconds:
        time.sleep(left + 0.5)


def test_rate_limit_headers_429_and_reconnects(stack: Stack) -> None:
    in_one_window()
    ip = fresh_ip()
    launches = []
    for n in range(LIMIT):
        response = open_build(stack, ip)
        assert response.headers["x-ratelimit-limit"] == str(LIMIT)
        assert response.headers["x-ratelimit-remaining"] == str(LIMIT - n - 1)
        event_id, event = first_event(response)
        assert event["phase"] == "waiting", event
        assert event_id
        launches.append(event_id)
        wait_released(stack, ip)
    refused = open_build(stack, ip)
    assert refused.headers["x-ratelimit-remaining"] == "0"
    reset = int(refused.headers["x-ratelimit-reset"])
    retry = int(refused.headers["Retry-After"])
    _, event = first_event(refused)
    assert event["phase"] == "failed" and event["status_code"] == 429
    assert event["retry_after"] == retry and abs(reset - time.time() - retry) <= 2
    assert "Try again in" in event["message"]
    resumed = open_build(stack, ip, **{"Last-Event-ID": launches[0]})
    assert "x-ratelimit-limit" not in resumed.headers
    event_id, event = first_event(resumed)
    assert event_id and event_id.split("_")[0] == launches[0].split("_")[0], "the same launch continues"
    assert event["phase"] != "failed" or event["status_code"] != 429, event


def test_the_loading_page_token_skips_the_limit_and_binds_the_spec(stack: Stack) -> None:
    ip = fresh_ip()
    token = page_token(stack, ip)
    for _ in range(LIMIT + 2):
        response = open_build(stack, ip, query=f"?build_token={urllib.parse.quote(token)}")
        assert "x-ratelimit-limit" not in response.headers
        event = first_event(response)[1]
        assert event["phase"] == "waiting", event
        wait_released(stack, ip)  # this test is not about the open-stream limit
    other = SPEC.replace("main", "dev")
    _, event = first_event(open_build(stack, ip, other, f"?build_token={urllib.parse.quote(token)}"))
    assert event["status_code"] == 403 and "another repository" in event["message"]
    _, event = first_event(open_build(stack, ip, query=f"?build_token={urllib.parse.quote(token)}",
                                      Origin="https://elsewhere.example"))
    assert event["status_code"] == 403 and "another site" in event["message"]


def test_banned_networks_are_refused_naming_the_label(stack: Stack) -> None:
    _, event = first_event(open_build(stack, "192.0.2.44"))
    assert event["status_code"] == 403 and "the Example Lab network" in event["message"]
    page = requests.get(f"{stack.url}/v2/{SPEC}", headers={"X-Forwarded-For": "6.6.6.6, 192.0.2.44"}, timeout=10)
    assert page.status_code == 403 and "the Example Lab network" in page.text


@pytest.mark.parametrize("headers", [
    {"X-Forwarded-For": "\u00ff" * 300},
    {"X-Forwarded-For": ", , ,"},
    {"X-Forwarded-For": "[::1"},
    {"Origin": "http://[::1"},
    {"Origin": "x" * 4000},
    {"Last-Event-ID": "\u00e9" * 100},
])
def test_odd_headers_are_never_a_500(stack: Stack, headers: dict[str, str]) -> None:
    encoded = {k: v.encode("latin-1") for k, v in headers.items()}
    for query in ("", "?build_token=abc.def.ghi"):
        response = requests.get(f"{stack.url}/build/{SPEC}{query}", stream=True, timeout=30,
                                headers={"Accept": "text/event-stream", **encoded})  # type: ignore[dict-item]
        assert response.status_code == 200
        _, event = first_event(response)
        assert event["phase"] in ("waiting", "failed") and event.get("status_code", 200) < 500, event
    page = requests.get(f"{stack.url}/v2/{SPEC}", headers=encoded, timeout=10)  # type: ignore[arg-type]
    assert page.status_code < 500


def _web_workers(stack: Stack) -> set[int]:
    return {child.pid for child in psutil.Process(stack.processes["web"].pid).children()}


def test_open_streams_are_limited_per_address_across_two_web_workers(stack: Stack) -> None:
    db = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    launch_id = uuid.uuid4().hex  # one launch, as launches.start leaves it; clients follow it with Last-Event-ID
    db.set(f"bindery:launch:{launch_id}", SPEC, ex=600)
    entry = db.xadd(f"bindery:events:{launch_id}", {"data": json.dumps({"phase": "waiting", "message": "w"})})
    ip = fresh_ip()
    key = keys.STREAMS(client_key(ip))
    headers = {"X-Forwarded-For": ip, "Last-Event-ID": f"{launch_id}_{entry}"}
    url = f"{stack.url}/build/{SPEC}"
    held: dict[str, Any] = {}  # member in Redis -> open stream

    def open_one() -> None:
        before = set(db.zrange(key, 0, -1))
        stream = read_events(url, headers=headers, timeout=30)
        assert next(stream) == (None, ":keepalive")
        (member,) = set(db.zrange(key, 0, -1)) - before
        held[member] = stream

    def close_one(member: str) -> None:
        held.pop(member).close()
        deadline = time.monotonic() + 10
        while db.zscore(key, member) is not None:
            assert time.monotonic() < deadline, "a closed stream gives its place back"
            time.sleep(0.1)

    def pids() -> dict[str, int]:
        counts: dict[str, int] = {}
        for member in held:
            counts[member.split(":")[0]] = counts.get(member.split(":")[0], 0) + 1
        return counts

    try:
        for _ in range(STREAMS):
            open_one()
        for _ in range(40):  # the kernel picks the worker; re-open until both hold some
            if len(pids()) == 2:
                break
            close_one(next(iter(held)))
            open_one()
        assert len(pids()) == 2, f"streams spread over both web workers: {pids()}"
        assert {int(pid) for pid in pids()} == _web_workers(stack)
        assert max(pids().values()) < STREAMS, "neither worker alone is at the limit"
        refused = [data for _, data in read_events(url, headers=headers, timeout=30, stop_after=1)
                   if isinstance(data, dict)]
        assert refused[0]["phase"] == "failed" and refused[0]["status_code"] == 429
        assert f"{STREAMS} are open" in refused[0]["message"]
        other = fresh_ip()
        stream = read_events(url, headers={**headers, "X-Forwarded-For": other}, timeout=30)
        assert next(stream) == (None, ":keepalive")
        assert db.zcard(keys.STREAMS(client_key(other))) == 1, "another address is not affected"
        stream.close()
        wait_released(stack, other)
    finally:
        for member in list(held):
            close_one(member)
    assert db.zcard(key) == 0, "nothing leaks"


def test_stack_logs_have_no_tracebacks(stack: Stack) -> None:
    assert "Traceback" not in (Path(stack.directory) / "web.log").read_text(errors="replace")
