"""Cross-origin launches from documentation pages, with the real clients in a real browser.

Real: a Bindery stack (gunicorn, both Celery workers, beat, its own Redis) with
``cors_allow_origin`` set to the origin of a static site served on another loopback port,
repo2docker building through the Podman engine from git over HTTP, Jupyter servers in
containers, and Debian's Chromium driven by Playwright.  The pages load what documentation
sites load from npm (scripts/test-setup.sh puts them in var/test-npm): thebe 0.9.3's browser
bundle, and @jupyterhub/binderhub-client 0.5.0, whose ES modules are served as they ship
(an import map names its two dependencies; event-iterator ships CommonJS only, so the site
wraps it as a module, the one thing a bundler would do).

One stack serves every test: the image is built once (``build_only``) and each page then
launches it.  The refusals (setting off, an origin that is not the allowed one) need no
launch: the browser stops at the first request, as with BinderHub.
"""

from __future__ import annotations

import http.server
import json
import mimetypes
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from werkzeug.serving import make_server

from app import create_app
from app.redis_server import EmbeddedRedis
from tasks.backends.jupyterhub_launcher import JupyterHubLauncher
from tests.conftest import JUPYTER_IMAGE, GitServer
from tests.stack import ROOT, Stack, StackFactory, collect
from tests.tasks.backends import test_jupyterhub_launcher as hub_tests

pytestmark = [pytest.mark.integration, pytest.mark.engine]

# a real JupyterHub with DockerSpawner and the spawner mixin, as the launcher's own tests start it
hub = hub_tests.hub
hub_users = hub_tests.hub_users

NPM = ROOT / "var" / "test-npm"
LAB_IMAGE = "localhost/bindery-jupyterlab:bookworm"  # has ipykernel: thebe needs a kernel
BLOCKED = "blocked by CORS policy"


class StaticSite:
    """A documentation site on its own loopback origin: pages set by the test, npm files from var/test-npm."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body, kind = site.answer(urllib.parse.urlsplit(self.path).path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def answer(self, path: str) -> tuple[bytes | None, str]:
        if path in self.pages:
            return self.pages[path].encode(), "text/html; charset=utf-8"
        if path == "/shim/event-iterator.js":  # CommonJS -> a module
            source = (NPM / "node_modules/event-iterator/lib/event-iterator.js").read_text()
            wrapped = (f"const module = {{exports: {{}}}};\n(function (exports, module) {{\n{source}\n}})"
                       "(module.exports, module);\nexport const EventIterator = module.exports.EventIterator;\n")
            return wrapped.encode(), "text/javascript"
        if path.startswith("/npm/"):
            file = (NPM / path.removeprefix("/npm/")).resolve()
            if not file.is_file() and file.with_name(file.name + ".js").is_file():
                file = file.with_name(file.name + ".js")  # fetch-event-source imports "./parse"
            if file.is_file() and NPM.resolve() in file.parents:
                kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                return file.read_bytes(), "text/javascript" if file.suffix == ".js" else kind
        return None, "text/plain"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def thebe_page(binder_url: str, repo_url: str) -> str:
    config = {"bootstrap": True, "requestKernel": True, "useBinder": True,
              "binderOptions": {"binderUrl": binder_url, "repo": repo_url, "ref": "main", "repoProvider": "git"},
              "kernelOptions": {"kernelName": "python3"}, "savedSessionOptions": {"enabled": False},
              "mountActivateWidget": False}
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>thebe</title>
<script type="text/x-thebe-config">{json.dumps(config)}</script>
<link rel="stylesheet" href="/npm/thebe/lib/thebe.css">
<script src="/npm/thebe/lib/index.js"></script></head>
<body><h1>Live code</h1><pre data-executable="true" data-language="python">print(6 * 7)</pre></body></html>"""


def client_page(binder_url: str, spec: str) -> str:
    imports = {"@microsoft/fetch-event-source": "/npm/node_modules/@microsoft/fetch-event-source/lib/esm/index.js",
               "event-iterator": "/shim/event-iterator.js"}
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>binderhub-client</title>
<script type="importmap">{json.dumps({"imports": imports})}</script>
<script type="module">
import {{ BinderRepository }} from "/npm/node_modules/@jupyterhub/binderhub-client/lib/client.js";
window.lines = [];
const repo = new BinderRepository({json.dumps(spec)}, new URL({json.dumps(binder_url + "/build/")}));
window.binderRepo = repo;
for await (const line of repo.fetch()) {{
  window.lines.push(line);
  if (line.phase === "ready") {{
    repo.close();
    // the launched server, from this page's origin: what thebe does next
    const answer = await fetch(line.url + "api/kernelspecs", {{headers: {{Authorization: "token " + line.token}}}});
    window.server = {{status: answer.status, body: await answer.json()}};
  }}
  if (line.phase === "ready" || line.phase === "failed") break;
}}
window.done = true;
</script></head><body><h1>Launch</h1></body></html>"""


@pytest.fixture(scope="module")
def browser(browser: Any) -> Any:
    """The worker's one Chromium (tests/conftest.py: a second Playwright in a worker fails), once
    the clients the pages load are there."""
    if not (NPM / "thebe/lib/index.js").is_file() or not (NPM / "node_modules/@jupyterhub/binderhub-client").is_dir():
        pytest.fail(f"{NPM} lacks thebe or @jupyterhub/binderhub-client: `make test-setup` installs them")
    return browser


class Page:
    """A fresh browser context (no saved sessions) whose console is kept."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda message: self.console.append(message.text))
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def blocked(self) -> list[str]:
        return [line for line in self.console if BLOCKED in line]


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    opened = Page(browser)
    yield opened
    opened.context.close()


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[StaticSite, StaticSite]]:
    """The documentation site Bindery trusts, and another one it does not."""
    trusted, other = StaticSite(), StaticSite()
    yield trusted, other
    trusted.stop()
    other.stop()


@pytest.fixture(scope="module")
def lab_image(engine: docker.DockerClient) -> str:
    try:
        engine.images.get(LAB_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{LAB_IMAGE} is missing: `make test` builds it (scripts/base-image.sh)")
    return LAB_IMAGE


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory, engine: docker.DockerClient,
          sites: tuple[StaticSite, StaticSite]) -> Iterator[Stack]:
    """One Bindery for the module: the trusted site's origin allowed, images in the engine's store."""
    running = make_module_stack("cors-stack", {
        "cors_allow_origin": sites[0].origin,
        "keepalive_interval": 1,
        "abandon_timeout": 3,
        "launch_idle_timeout": 600,
        "launch_timeout": 120,
        "launch_event_sinks": ["file"],
    }, registry=False, beat=True)
    yield running
    for container in engine.containers.list(ignore_removed=True, all=True, filters={"label": [
            f"org.bindery.instance={running.settings['instance_name']}"]}):
        container.remove(force=True)  # this stack's servers, by its instance label


@pytest.fixture(scope="module")
def built_repo(stack: Stack, git_server: GitServer, lab_image: str) -> str:
    """A repository whose image is built once (build_only), so each page's launch is a cached one."""
    repo_url, _ = git_server.make_repo(f"FROM {lab_image}\nRUN echo {uuid.uuid4().hex} > /home/jovyan/.build-id\n")
    started = time.monotonic()
    events = collect(f"{stack.url}/build/git/{urllib.parse.quote(repo_url, safe='')}/main?build_only=true",
                     timeout=600)
    assert events[-1][1]["phase"] == "ready", events[-3:]
    print(f"\ncross-origin: image built in {time.monotonic() - started:.1f} s")
    return repo_url


def launch_events(stack: Stack) -> list[dict[str, Any]]:
    path = Path(stack.settings["data_dir"]) / "launch-events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_a_thebe_page_on_another_origin_runs_a_cell_on_a_server_bindery_launched(
        stack: Stack, built_repo: str, sites: tuple[StaticSite, StaticSite], page: Page) -> None:
    trusted = sites[0]
    trusted.pages["/thebe.html"] = thebe_page(stack.url, built_repo)
    started = time.monotonic()
    page.page.goto(f"{trusted.origin}/thebe.html")
    # thebe renders the cell with a run button, then asks Bindery for a server and starts a kernel
    deadline = started + 120
    while not page.page.evaluate("!!(window.thebe && window.thebe.session)"):
        assert not page.blocked(), page.blocked()  # e.g. the server was not told to trust the page
        assert time.monotonic() < deadline, f"no kernel within 120 s: {page.console[-10:]}"
        page.page.wait_for_timeout(100)
    kernel_ready = time.monotonic() - started
    page.page.locator(".thebe-run-button").first.click()
    output = page.page.locator(".jp-OutputArea-output").first
    output.wait_for(timeout=60_000)
    assert output.inner_text().strip() == "42"
    first_output = time.monotonic() - started
    print(f"\ncross-origin: thebe page load -> kernel ready {kernel_ready:.1f} s, -> first cell output "
          f"{first_output:.1f} s (cached image)")
    assert not page.blocked(), page.blocked()
    # counted like any launch, with where the request came from
    events = [e for e in launch_events(stack) if e["status"] == "success" and "repo-" in e["spec"]]
    assert events, launch_events(stack)
    assert events[-1]["origin"] == stack.url.split("://", 1)[1]  # the Bindery, as in BinderHub's schema
    assert events[-1]["request_origin"] == trusted.origin  # the page that launched it


def test_binderhub_client_on_another_origin_follows_a_launch_to_ready(
        stack: Stack, built_repo: str, sites: tuple[StaticSite, StaticSite], page: Page) -> None:
    trusted = sites[0]
    spec = f"git/{urllib.parse.quote(built_repo, safe='')}/main"
    trusted.pages["/client.html"] = client_page(stack.url, spec)
    page.page.goto(f"{trusted.origin}/client.html")
    page.page.wait_for_function("() => window.done", timeout=120_000)
    lines = page.page.evaluate("window.lines")
    phases = [line["phase"] for line in lines]
    assert phases[-1] == "ready", lines
    assert phases[0] == "waiting" and "launching" in phases, phases
    ready = lines[-1]
    assert ready["url"].startswith("http://127.0.0.1:") and ready["token"]
    # the launched server trusts the page's origin too (--ServerApp.allow_origin)
    server = page.page.evaluate("window.server")
    assert server["status"] == 200 and "python3" in server["body"]["kernelspecs"], server
    assert not page.blocked() and not page.errors, (page.blocked(), page.errors)


def test_a_page_that_goes_away_abandons_its_cross_origin_launch(
        stack: Stack, git_server: GitServer, lab_image: str, sites: tuple[StaticSite, StaticSite],
        page: Page) -> None:
    """As on the loading page: nobody reads the stream any more, so the launch is cancelled."""
    repo_url, _ = git_server.make_repo(f"FROM {lab_image}\nRUN sleep 10\n")
    spec = f"git/{urllib.parse.quote(repo_url, safe='')}/main"
    sites[0].pages["/leaves.html"] = client_page(stack.url, spec)
    before = cancelled(stack)
    page.page.goto(f"{sites[0].origin}/leaves.html")
    page.page.wait_for_function("() => window.lines.some(l => l.phase === 'building')", timeout=60_000)
    page.context.close()  # the visitor closes the tab mid-build
    closed = time.monotonic()
    deadline = closed + 30
    while len(cancelled(stack)) == len(before) and time.monotonic() < deadline:
        time.sleep(0.2)
    after = cancelled(stack)
    assert len(after) == len(before) + 1, (before, after)
    print(f"\ncross-origin: launch cancelled {time.monotonic() - closed:.1f} s after its page closed "
          f"(abandon_timeout 3 s)")


def cancelled(stack: Stack) -> list[str]:
    """The launches the abandon beat job cancelled (tasks/beat/abandon.py logs each one)."""
    return [line for role in stack.processes
            for line in (stack.directory / f"{role}.log").read_text(errors="replace").splitlines()
            if "cancelled: no reader" in line]


@pytest.fixture(scope="module")
def closed_bindery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bindery with the setting off (the default): the browser refuses before any launch starts."""
    redis = EmbeddedRedis(tmp_path_factory.mktemp("cors-off-redis")).start()
    app = create_app({"redis_url": redis.url, "launcher": "bench"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)
    redis.stop()


@pytest.mark.parametrize("which", ["setting off", "another origin"])
def test_the_browser_refuses_when_the_page_s_origin_is_not_allowed(
        which: str, stack: Stack, closed_bindery: str, sites: tuple[StaticSite, StaticSite], page: Page) -> None:
    binder, site = (closed_bindery, sites[0]) if which == "setting off" else (stack.url, sites[1])
    spec = "git/" + urllib.parse.quote("https://example.org/never-launched.git", safe="") + "/main"
    site.pages["/refused.html"] = client_page(binder, spec)
    site.pages["/thebe-refused.html"] = thebe_page(binder, "https://example.org/never-launched.git")
    page.page.goto(f"{site.origin}/refused.html")
    page.page.wait_for_function("() => window.done", timeout=30_000)
    lines = page.page.evaluate("window.lines")
    assert [line["phase"] for line in lines] == ["failed"], lines  # fetch() rejected: no event was readable
    assert "Failed to fetch" in lines[0]["message"], lines
    assert any("/build/git/" in line for line in page.blocked()), page.console
    page.console.clear()
    page.page.goto(f"{site.origin}/thebe-refused.html")  # thebe's EventSource: refused the same way
    deadline = time.monotonic() + 20
    while not page.blocked() and time.monotonic() < deadline:
        page.page.wait_for_timeout(100)
    assert any("/build/git/" in line for line in page.blocked()), page.console
    assert page.page.evaluate("!(window.thebe && window.thebe.session)"), "no kernel without Bindery's answer"


def test_a_server_launched_through_jupyterhub_trusts_the_page_s_origin(
        hub: Any, hub_users: None, sites: tuple[StaticSite, StaticSite], page: Page) -> None:
    """The jupyterhub launcher's user_options -> the spawner mixin -> the server's allow_origin."""
    trusted = sites[0]
    config = hub_tests._config(hub, cors_allow_origin=trusted.origin)
    url, token = JupyterHubLauncher(config).launch(hub_tests._launch(JUPYTER_IMAGE), lambda event: None)
    trusted.pages["/hub.html"] = "<!doctype html><title>hub</title>"
    page.page.goto(f"{trusted.origin}/hub.html")
    # a header of its own makes this a preflighted request, as thebe's kernel calls are
    answer = page.page.evaluate("""async ([url, token]) => {
        try {
            const r = await fetch(url + "api/kernelspecs", {headers: {Authorization: "token " + token}});
            return {status: r.status, body: await r.json()};
        } catch (error) { return {error: String(error)}; }  // refused: the server does not trust the page
    }""", [url, token])
    assert answer["status"] == 200 and "kernelspecs" in answer["body"], answer
    assert not page.blocked(), page.console
