"""The loading page in real headless Chromium against a real Bindery.

Real: gunicorn + Celery build and launch workers + embedded Redis (tests.stack.Stack), the
reference registry, repo2docker 2024.7.0 building through the Podman engine, Jupyter servers
in containers, git repositories over HTTP on loopback, Debian's Chromium. Nothing is mocked.
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
import redis

from tasks import timings
from tasks.backends.docker_launcher import LABEL, repo_label
from tests.conftest import JUPYTER_IMAGE, GitServer
from tests.stack import Stack, StackFactory, launch_ports
from tests.templates.conftest import ARTIFACTS, VIEWPORT, screenshot

pytestmark = [pytest.mark.integration, pytest.mark.engine]

LOW, HIGH = launch_ports()  # a launched server listens on one of the launch ports of this worker's Stacks
SERVER = re.compile(rf"^http://127\.0\.0\.1:({'|'.join(str(port) for port in range(LOW, HIGH + 1))})/")
BUILD_TIMEOUT_MS = 300_000


def dockerfile(seconds: int = 0, lines: int = 0, fail: bool = False) -> str:
    """A new image FROM the local Jupyter base: coloured log lines, a pause, maybe a failure."""
    steps = [f"echo build-{uuid.uuid4().hex}"]
    if lines:
        steps.append(f"for i in $(seq 1 {lines}); do printf '\\033[32mline %s of the build\\033[0m\\n' $i; done")
    if seconds:
        steps.append(f"sleep {seconds}")
    if fail:
        steps.append("echo about-to-fail && false")
    return f"FROM {JUPYTER_IMAGE}\nRUN {' && '.join(steps)}\n"


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory, build_counter: tuple[Path, list[str]]) -> Stack:
    return make_module_stack("stack", {
        "repo2docker_command": build_counter[1],
        "keepalive_interval": 1,
        "launch_idle_timeout": 600,
        "launch_timeout": 180,
    })


def loading_url(stack: Stack, repo_url: str, query: str = "") -> str:
    return f"{stack.url}/v2/git/{urllib.parse.quote(repo_url, safe='')}/main{query}"


def runs(counter: Path, sha: str) -> int:
    return sum(sha in line for line in counter.read_text().splitlines())


def wait_phase(page: Any, *phases: str, timeout: int = BUILD_TIMEOUT_MS) -> str:
    page.wait_for_function(f"{list(phases)!r}.includes(document.body.dataset.phase)", timeout=timeout)
    return str(page.evaluate("document.body.dataset.phase"))


def stream_requests(page: Any) -> list[str]:
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url) if "/build/" in request.url else None)
    return urls


def assert_logged_in(page: Any) -> None:
    """The browser is on the Jupyter server and holds its login (the token was used)."""
    origin = SERVER.match(page.url)
    assert origin, page.url
    status = page.goto(f"{origin.group(0)}api/status")
    assert status is not None and status.status == 200, "the token logged the browser in"
    assert "started" in status.json()


#: What keeps the page responsive while thousands of log lines arrive, seen from the page: #log is
#: written once per animation frame (or per half second where the page gets no frames) with all the
#: lines that came meanwhile, never once per line.  Long tasks are kept as a figure only: their
#: milliseconds are wall time, which the suite's crowded cores inflate.
LOG_WRITES = """
window.logWrites = {writes: 0, longTasks: []};
new PerformanceObserver(list => window.logWrites.longTasks.push(...list.getEntries().map(e => Math.round(e.duration))))
  .observe({type: 'longtask', buffered: true});
document.addEventListener('DOMContentLoaded', () => {
  const log = document.getElementById('log');  // (the Jupyter server's pages have none)
  if (log) new MutationObserver(records => { window.logWrites.writes += records.length; })
    .observe(log, {childList: true});
});
"""


def test_from_link_to_jupyter_with_progress_and_coloured_log(
        page: Any, stack: Stack, git_server: GitServer, launched_containers: list[str]) -> None:
    repo_url, _ = git_server.make_repo(dockerfile(seconds=8, lines=3000))
    page.add_init_script(LOG_WRITES)
    page.goto(loading_url(stack, repo_url, "?urlpath=api"))
    wait_phase(page, "building")
    launched_containers.append(page.evaluate("document.body.dataset.launchId"))
    page.wait_for_selector("#log .ansi-fg-2 >> text=line 3000 of the build", state="attached",
                           timeout=BUILD_TIMEOUT_MS)
    assert page.is_hidden("#log"), "the log starts collapsed"
    page.click("#log-panel summary")
    assert page.is_visible("#log")
    assert int(page.get_attribute("#progress", "aria-valuenow")) >= 35
    assert page.title().startswith("Building the image (35%)")
    assert page.get_attribute("#favicon", "href").startswith("data:image/svg+xml")
    assert "done" in page.get_attribute("#steps li[data-step=waiting]", "class")
    assert page.get_attribute("#steps li[data-step=building]", "aria-current") == "step"
    lines = int(re.sub(r"\D", "", page.text_content("#log-count")))
    assert lines >= 3000, lines
    writes = page.evaluate("window.logWrites")
    assert 0 < writes["writes"] < lines / 3, f"the log is written in batches, not line by line: {writes}"
    ARTIFACTS.mkdir(exist_ok=True)  # how long the main thread was blocked: a figure, load-dependent
    (ARTIFACTS / "loading-long-tasks.txt").write_text(f"long tasks (ms), 3000-line log: {writes['longTasks']}\n")
    assert "\x1b" not in page.text_content("#log"), "escape codes are rendered, not shown"
    screenshot(page, "loading-building")
    page.wait_for_url(SERVER, timeout=BUILD_TIMEOUT_MS)
    assert "token=" in page.url and "/api" in page.url
    page.wait_for_load_state()
    assert '"version"' in page.text_content("body"), "the Jupyter server's API answered the browser"
    recorded = timings.estimate(repo_url, redis.Redis.from_url(stack.redis.url, decode_responses=True))
    for kind in ("build", "launch"):  # the workers keep the durations the next ETA comes from
        assert recorded[kind]["basis"] == "repository" and recorded[kind]["samples"] == 1, recorded
        assert 0 < recorded[kind]["seconds"] < 300, recorded


def test_reload_mid_build_continues_the_same_launch(
        page: Any, stack: Stack, git_server: GitServer, build_counter: tuple[Path, list[str]],
        engine: docker.DockerClient, launched_containers: list[str]) -> None:
    repo_url, sha = git_server.make_repo(dockerfile(seconds=10, lines=50))
    streams = stream_requests(page)
    page.goto(loading_url(stack, repo_url))
    wait_phase(page, "building")
    page.wait_for_selector("#log >> text=line 50 of the build", state="attached", timeout=BUILD_TIMEOUT_MS)
    launch_id = page.evaluate("document.body.dataset.launchId")
    launched_containers.append(launch_id)
    page.reload()
    page.wait_for_url(SERVER, timeout=BUILD_TIMEOUT_MS)
    assert_logged_in(page)
    assert len(streams) == 2, streams
    assert "lastEventId" not in streams[0]
    resumed = urllib.parse.parse_qs(urllib.parse.urlsplit(streams[1]).query)["lastEventId"][0]
    assert resumed.startswith(f"{launch_id}_"), "the reloaded page asked for the rest of the same launch"
    assert runs(build_counter[0], sha) == 1, "one build"
    servers = engine.containers.list(ignore_removed=True,
            all=True, filters={"label": [f"org.bindery.repo={repo_label(repo_url)}"]})
    assert [c.labels[LABEL] for c in servers] == [launch_id], "one server, of the first launch"


def test_bad_spec_shows_the_failure_with_the_log_open_and_retry(page: Any, stack: Stack) -> None:
    streams = stream_requests(page)
    page.goto(f"{stack.url}/v2/gh/only-a-user")
    assert wait_phase(page, "failed", timeout=60_000) == "failed"
    assert page.is_visible("#error")
    assert "<user>/<repo>/<ref>" in page.text_content("#error-message")
    assert page.get_attribute("#log-panel", "open") is not None, "the log is open"
    assert page.evaluate("document.activeElement.id") == "error", "focus moves to the failure"
    assert page.title().startswith("✗ Failed")
    assert page.get_attribute("#progress", "class") == "progress failed"
    page.click("#retry")
    assert wait_phase(page, "failed", timeout=60_000) == "failed"
    assert len(streams) == 2 and "lastEventId" not in streams[1], "a retry after a failure is a new launch"


def test_failed_build_shows_its_log(page: Any, stack: Stack, git_server: GitServer) -> None:
    repo_url, _ = git_server.make_repo(dockerfile(lines=30, fail=True))
    page.goto(loading_url(stack, repo_url))
    assert wait_phase(page, "failed") == "failed"
    assert "about-to-fail" in page.text_content("#error-message")
    assert page.is_visible("#log")
    assert "line 30 of the build" in page.text_content("#log")
    assert page.evaluate("sessionStorage.length") == 0, "a reload after a failure starts afresh"
    screenshot(page, "loading-failed")


def test_where_you_stand_while_queued(
        browser: Any, stack: Stack, git_server: GitServer, launched_containers: list[str]) -> None:
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    # Recent launches of other repositories; the medians stay 120 s and 10 s whatever the
    # earlier tests of this module (a few real builds and launches) recorded.
    for n in range(8):
        timings.record("build", f"https://elsewhere.example/{n}", 120, client)
        timings.record("launch", f"https://elsewhere.example/{n}", 10, client)
    first_repo, _ = git_server.make_repo(dockerfile(seconds=15))
    second_repo, _ = git_server.make_repo(dockerfile())
    contexts = [browser.new_context(viewport=VIEWPORT) for _ in range(2)]
    try:
        first, second = (context.new_page() for context in contexts)
        first.goto(loading_url(stack, first_repo))
        wait_phase(first, "building")  # the only build worker is busy
        second.goto(loading_url(stack, second_repo))
        second.wait_for_function("document.getElementById('queue-position').textContent.startsWith('1')",
                                 timeout=60_000)
        assert second.is_visible("#where")
        assert second.text_content("#queue-position") == "1 (next to start)"
        assert second.text_content("#eta") == "about 2 minutes", "own build 120 s + launch 10 s"
        assert "all repositories" in second.text_content("#eta-basis")
        for page in (first, second):
            launched_containers.append(page.evaluate("document.body.dataset.launchId"))
        second.wait_for_url(SERVER, timeout=BUILD_TIMEOUT_MS)
        assert second.is_hidden("#where") or SERVER.match(second.url)
        first.wait_for_url(SERVER, timeout=BUILD_TIMEOUT_MS)
    finally:
        for context in contexts:
            context.close()
