"""Hypothesis over the whole HTTP API: no 5xx, no traceback to a client, no user-controlled option.

The app comes from the factory and talks to a real Redis of its own (an EmbeddedRedis started
here, so the launches these requests queue never reach another test's workers).  Every /build/
request that is accepted for a git repository also runs the chain's first step, resolving the
ref, in this process against a real git server on loopback, so real ``git ls-remote`` commands
run with generated URLs and refs.  An audit hook (``sys.addaudithook``) records every process
started meanwhile; each must carry only our own options, user values only after ``--``.

5,000 requests in all: BUILD_EXAMPLES (2,000) /build/ streams, PAGE_EXAMPLES (1,000) landing,
loading, legacy and log pages, ANY_EXAMPLES (2,000) any method, path and headers on any route;
about a minute on 2 cores beside the rest of the suite.  Every run draws new examples (no
database); FUZZ_SCALE=10 runs ten times as many, for a deeper look than each `make test` takes.
"""

from __future__ import annotations

import os
import re
import string
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from app.errors import BinderyError
from app.redis_server import EmbeddedRedis
from providers import get_provider
from tasks.backends.docker_builder import repo2docker_command
from tests.conftest import GitServer

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
BUILD_EXAMPLES = int(2_000 * SCALE)
PAGE_EXAMPLES = int(1_000 * SCALE)
ANY_EXAMPLES = int(2_000 * SCALE)


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))

#: Options our own code puts on command lines; anything else starting with '-' came from outside.
OWN_OPTIONS = {
    "git": {"-c", "--"},
    "repo2docker": {"--config", "--json-logs", "--no-run", "--user-id", "--user-name", "--ref", "--image-name",
                    "--push", "--", "-m"},
}
TAKES_VALUE = {"-c", "--config", "--user-id", "--user-name", "--ref", "--image-name", "-m"}
_SPAWN_EVENTS = ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system")


class CommandLog:
    """Processes started while recording: (event, argv)."""

    def __init__(self) -> None:
        self.recording = False
        self.commands: list[tuple[str, list[str]]] = []

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.recording or not event.startswith(_SPAWN_EVENTS):
            return
        if event == "os.system":
            self.commands.append((event, [str(args[0])]))
            return
        argv = args[1] if event != "os.spawn" else args[2]
        if isinstance(argv, (str, bytes)):
            argv = [argv]
        self.commands.append((event, [os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in argv or []]))


COMMANDS = CommandLog()


def check_command(argv: list[str], user_values: list[str]) -> None:
    """Only our own options; a user value only as the value of one of them (never starting with
    '-', so it cannot be read as an option) or after ``--``."""
    program = Path(argv[0]).name
    own = OWN_OPTIONS["repo2docker" if "repo2docker" in " ".join(argv[:3]) else program]
    end = argv.index("--") if "--" in argv else len(argv)
    for index in range(1, end):  # after '--' everything is an operand, whatever it looks like
        arg = argv[index]
        if argv[index - 1] in TAKES_VALUE and index > 1:
            assert not arg.startswith("-"), f"option value {arg!r} starts with '-': {argv}"
            continue
        if arg.startswith("-"):
            assert arg in own, f"option {arg!r} is not one of ours: {argv}"
        assert arg not in user_values, f"user value {arg!r} is neither an option's value nor after '--': {argv}"


@pytest.fixture(scope="module")
def fuzz_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("fuzz-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fuzz_app(fuzz_redis: EmbeddedRedis) -> Flask:
    """Every limit on (high, so requests still get through), so their code runs too."""
    return create_app({
        "redis_url": fuzz_redis.url, "launcher": "bench", "keepalive_interval": 0.05, "provider_timeout": 5,
        "trusted_proxy_hops": 1, "rate_limit": 1_000_000, "max_streams_per_ip": 100_000,
        "ban_networks": {"192.0.2.0/24": "Example Net"}, "health_cache_seconds": 60,
    })


@pytest.fixture(scope="module")
def repos(git_server: GitServer) -> list[str]:
    first, _ = git_server.make_repo("FROM scratch\n")
    second, _ = git_server.make_repo("FROM scratch\n", branch="trunk")
    return [first, second]


@pytest.fixture(scope="module", autouse=True)
def audit() -> Iterator[CommandLog]:
    if not getattr(sys, "_bindery_fuzz_hook", False):  # audit hooks cannot be removed: install once
        sys.addaudithook(COMMANDS.hook)
        sys._bindery_fuzz_hook = True  # type: ignore[attr-defined]
    yield COMMANDS
    COMMANDS.recording = False


# --- what people (and scripts) send ----------------------------------------------------------

NASTY = st.sampled_from([
    "", "-", "--", "--upload-pack=touch /tmp/pwned", "-oProxyCommand=touch x", "--config=x", "-c", "-h",
    "..", ".", "/", "//", "%2F", "%2f", "%00", "%0A", "%0d%0a", "%25", "%ff", "%c3%28", "%", "%%", "%2D%2D",
    "?", "#", "&", "=", ";", "@", ":", "://", "\\", "'", '"', "<script>", "{{7*7}}", "${x}", "`id`",
    "HEAD", "main", "trunk", "master", "v1.0", "a" * 41, "0" * 40, "é", "\u202e", "\ufeff", "~", "^{}", "*",
])
WORD = st.text(alphabet=string.ascii_letters + string.digits + "-_.~%", min_size=0, max_size=12)
PIECE = st.one_of(NASTY, WORD, st.text(max_size=8))
TEXT = st.lists(PIECE, max_size=5).map("".join)
PROVIDERS = st.sampled_from(["gh", "gl", "git", "gist", "zenodo", "figshare", "hydroshare", "dataverse",
                             "ckan", "swh", "image", "", "-", "GH", "nope", "%67h"])
REFS = st.one_of(st.sampled_from(["main", "HEAD", "trunk", "no-such-ref", "-x", "--upload-pack=touch x",
                                  "refs/heads/main", "main^{}", "0" * 40, "-" + "0" * 39]), TEXT)
HOST_URLS = st.sampled_from([
    "http://169.254.169.254/latest/meta-data", "http://10.0.0.1/r.git", "http://[::1]:1/r.git",
    "http://[fd00:ec2::254]/", "http://no-such-host.invalid/r.git", "https://-h/r.git", "git://127.0.0.1:1/r",
    "ssh://git@127.0.0.1/r.git", "file:///etc", "--upload-pack=x", "-h", "ext::sh -c touch% x", "http://2130706433/x",
])


def pick(launch_ids: list[str], index: int, otherwise: str) -> str:
    """Half the time a launch id seen so far (chosen outside the strategy: the list grows)."""
    return launch_ids[index // 2 % len(launch_ids)] if launch_ids and index % 2 else otherwise


def quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def git_spec(draw: Any, repos: list[str]) -> tuple[str, list[str]]:
    """A git spec and the user values in it (unescaped URL and ref)."""
    real = st.sampled_from(repos)
    url = draw(st.one_of(real, real, real.map(lambda u: u.replace("127.0.0.1", "localhost")), HOST_URLS, TEXT))
    ref = draw(REFS)
    quoted = draw(st.sampled_from([quote(url)] * 4 + [url, quote(url).replace("%2F", "/", 1)]))
    return f"{quoted}/{quote(ref) if draw(st.booleans()) else ref}", [url, ref]


@st.composite
def build_requests(draw: Any, repos: list[str], launch_ids: list[str]) -> dict[str, Any]:
    provider = draw(st.one_of(st.just("git"), PROVIDERS))  # half of them git: those run commands
    if provider == "git" and draw(st.integers(0, 3)):
        spec, values = git_spec(draw, repos)
    else:
        spec = draw(TEXT)
        values = [spec, urllib.parse.unquote(spec)]
    headers = {"Accept": draw(st.sampled_from(["text/event-stream"] * 6 + ["text/html", "*/*", "",
                                                                        "text/event-stream;q=0.1, x/y"]))}
    if not draw(st.integers(0, 3)):
        channel = pick(launch_ids, draw(st.integers(0, 2**16)), draw(st.text(alphabet="0123456789abcdef",
                                                                                 min_size=32, max_size=32)))
        headers["Last-Event-ID"] = draw(st.sampled_from([f"{channel}_0-0", f"{channel}_1-1", f"{channel}_x",
                                                         "", "-1", "9" * 40])) + draw(st.sampled_from(["", "_1"]))
    if draw(st.booleans()):
        headers["X-Forwarded-For"] = draw(st.sampled_from(["1.2.3.4", "192.0.2.7", "::1, 10.0.0.1", "garbage",
                                                           "[::1]:80", "1.2.3.4:5", "", ", ,", "2001:db8::1%eth0"]))
    query = {}
    for name in draw(st.lists(st.sampled_from(["build_only", "build_token", "lastEventId", "urlpath", "x",
                                                "labpath", "build_token"]), max_size=3)):
        query[name] = draw(st.one_of(st.sampled_from(["true", "1", "", "-1", "yes"]), TEXT))
    return {"path": f"/build/{provider}/{spec}", "headers": headers, "query": query, "values": values,
            "provider": provider, "spec": spec}


def latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


HEADER_VALUE = TEXT.map(lambda t: re.sub(r"[\x00-\x1f\x7f]", "", latin1(t)))
ROUTES = st.sampled_from([
    "/", "/about", "/badge.svg", "/badge_logo.svg", "/versions", "/health", "/metrics", "/api/repoproviders",
    "/api/launches/{x}/position", "/v2/{p}/{x}", "/build/{p}/{x}", "/logs/{p}/{x}", "/repo/{x}/{x}",
    "/repo/{x}/{x}/{x}", "/static/{x}", "/static/js/{x}", "/{x}", "/{x}/{x}", "/api/{x}", "/build/{p}", "/v2/",
])


@st.composite
def any_requests(draw: Any, launch_ids: list[str]) -> dict[str, Any]:
    path = draw(ROUTES)
    while "{x}" in path or "{p}" in path:
        path = path.replace("{p}", draw(PROVIDERS), 1).replace("{x}", pick(launch_ids, draw(st.integers(0, 2**16)),
                                                                           draw(TEXT)), 1)
    headers = {name: draw(HEADER_VALUE) for name in draw(st.lists(st.sampled_from(
        ["Accept", "Last-Event-ID", "X-Forwarded-For", "Origin", "Referer", "If-None-Match", "Range",
         "Accept-Encoding", "Content-Type", "User-Agent", "Cookie", "If-Modified-Since"]), max_size=4))}
    query = draw(st.lists(st.tuples(st.sampled_from(["repo", "ref", "build_token", "format", "lastEventId",
                                                     "build_only", "urlpath", "x", ""]), TEXT), max_size=3))
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"]))
    return {"path": path, "headers": headers, "query": query, "method": method}


# --- sending and checking --------------------------------------------------------------------

class Sender:
    """Sends one request through the app as gunicorn would present it (``RAW_URI`` kept)."""

    def __init__(self, app: Flask) -> None:
        self.client = app.test_client()
        self.count = 0
        self.statuses: dict[int, int] = {}
        self.launch_ids: list[str] = []

    def send(self, method: str, path: str, query: Any, headers: dict[str, str]) -> tuple[int, str]:
        raw_query = urllib.parse.urlencode(query)
        # The path as sent on the wire: percent-escapes kept, non-ASCII escaped as a browser would.
        raw_path = urllib.parse.quote(path, safe="/%:@!$&'()*+,;=-._~")
        raw = raw_path + (f"?{raw_query}" if raw_query else "")
        self.count += 1
        # PATH_INFO as gunicorn decodes it: handing the client the path itself would make it read
        # a path like '//:99999' as a host and port and fail before the app sees the request.
        path_info = urllib.parse.unquote_to_bytes(raw_path).decode("latin-1")
        response = self.client.open("/", method=method, query_string=raw_query, headers=headers, buffered=False,
                                    environ_overrides={"RAW_URI": raw, "PATH_INFO": path_info,
                                                       "REMOTE_ADDR": "127.0.0.1"})
        try:
            chunks: list[bytes] = []
            events = 0
            for chunk in response.response:
                chunks.append(chunk if isinstance(chunk, bytes) else chunk.encode())
                if response.mimetype == "text/event-stream":
                    events += chunk.count(b"data:") if isinstance(chunk, bytes) else chunk.count("data:")
                    if events >= 1 or len(chunks) > 3:  # a live stream: the first event is enough
                        break
            body = b"".join(chunks).decode("utf-8", "replace")
        finally:
            response.close()
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500 or (path == "/health" and response.status_code == 503), \
            (method, raw, headers, response.status_code, body[:500])
        assert "Traceback" not in body and 'File "' not in body, (raw, body[:2000])
        for match in re.finditer(r"^id: ?([0-9a-f]{32})_", body, re.MULTILINE):
            if match.group(1) not in self.launch_ids:
                self.launch_ids.append(match.group(1))
        return response.status_code, body


@pytest.fixture(scope="module")
def sender(fuzz_app: Flask) -> Iterator[Sender]:
    started = time.monotonic()
    sent = Sender(fuzz_app)
    yield sent
    print(f"\nfuzz: {sent.count} requests in {time.monotonic() - started:.1f} s; statuses {sent.statuses}")


def test_build_streams(fuzz_app: Flask, sender: Sender, repos: list[str]) -> None:
    resolved = {"runs": 0, "commands": 0}

    @fuzz(BUILD_EXAMPLES)
    @given(data=st.data())
    def check(data: Any) -> None:
        request = data.draw(build_requests(repos, sender.launch_ids))
        _, body = sender.send("GET", request["path"], request["query"], request["headers"])
        accepted = '"phase": "waiting"' in body and '"phase": "failed"' not in body
        if accepted and request["provider"] == "git" and "Last-Event-ID" not in request["headers"]:
            resolve_in_process(fuzz_app, request, resolved)

    check()
    assert resolved["runs"] >= 40, resolved  # generated git specs really reached git (about 100 do)
    assert resolved["commands"] >= 30, resolved
    assert len(sender.launch_ids) >= 50
    print(f"\nbuild: {len(sender.launch_ids)} launches accepted, {resolved['runs']} resolved in process, "
          f"{resolved['commands']} commands checked")


def resolve_in_process(app: Flask, request: dict[str, Any], counts: dict[str, int]) -> None:
    """The chain's first step for an accepted git spec, with every process it starts checked."""
    with app.app_context():
        config = app.config["BINDERY"]
        repo = get_provider("git", request["spec"], config)
        values = [*request["values"], repo.repo_url(), repo.unresolved_ref]
        COMMANDS.commands.clear()
        COMMANDS.recording = True
        try:
            ref = repo.resolve().ref
        except BinderyError as error:
            assert error.status_code < 500 or error.status_code in (502, 503, 504), error.message
            ref = None
        finally:
            COMMANDS.recording = False
        counts["runs"] += 1
        for _, argv in COMMANDS.commands:
            counts["commands"] += 1
            check_command(argv, values)
        if ref:  # the build's command line for this spec (built, not run: builds take minutes)
            launch = {"resolved_ref": ref, "image": "bindery-fuzz:latest"}
            check_command(repo2docker_command(config, repo, launch, "/tmp/c.py"), values)


def test_pages(sender: Sender, repos: list[str]) -> None:
    @fuzz(PAGE_EXAMPLES)
    @given(kind=st.sampled_from(["landing", "loading", "legacy", "logs"]), provider=PROVIDERS,
           text=TEXT, ref=REFS, repo=st.sampled_from(repos))
    def check(kind: str, provider: str, text: str, ref: str, repo: str) -> None:
        if kind == "landing":
            status, _ = sender.send("GET", "/", {"repo": text, "ref": ref, "provider": provider},
                                    {"Accept": "text/html"})
            assert status == 200
        elif kind == "loading":
            spec = f"{quote(repo)}/{ref}" if provider == "git" else f"{text}/{ref}"
            status, _ = sender.send("GET", f"/v2/{provider}/{spec}", {"urlpath": text}, {"Accept": "text/html"})
        elif kind == "legacy":
            sender.send("GET", f"/repo/{text or 'u'}/{ref or 'r'}/{text}", {}, {})
        else:
            sender.send("GET", f"/logs/{provider}/{text}/{ref}", {"format": text}, {"Accept": "text/plain"})

    check()


def test_any_route(sender: Sender) -> None:
    @fuzz(ANY_EXAMPLES)
    @given(data=st.data())
    def check(data: Any) -> None:
        request = data.draw(any_requests(sender.launch_ids))
        sender.send(request["method"], request["path"], request["query"], request["headers"])

    check()
    assert sender.count >= BUILD_EXAMPLES + PAGE_EXAMPLES + ANY_EXAMPLES


def test_the_checker_catches_a_user_option() -> None:
    """The command check itself: a user value before ``--``, or an option not ours, fails it."""
    check_command(["git", "-c", "http.followRedirects=false", "ls-remote", "--", "-x", "main"], ["-x", "main"])
    check_command(["repo2docker", "--ref", "main", "--", "u"], ["main", "u"])
    for argv in (["git", "ls-remote", "--upload-pack=touch x", "--", "u"], ["git", "ls-remote", "main", "--", "u"],
                 ["repo2docker", "--ref", "-x", "--", "u"], ["git", "-c", "core.sshCommand=x", "ls-remote", "-x"]):
        with pytest.raises(AssertionError):
            check_command(argv, ["--upload-pack=touch x", "main"])
    COMMANDS.commands.clear()
    COMMANDS.recording = True
    try:
        subprocess.run(["git", "--version"], capture_output=True, check=True)
    finally:
        COMMANDS.recording = False
    assert COMMANDS.commands == [("subprocess.Popen", ["git", "--version"])]
