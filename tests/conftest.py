"""Fixtures: the app from its factory, and real services started (and stopped) by the tests."""

from __future__ import annotations

import functools
import http.server
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from flask import Flask

from app import create_app
from app.extensions import docker_client
from app.redis_server import EmbeddedRedis
from tests.stack import REGISTRY_PORT, RUN_ID_VARIABLE, TRUSTED_REGISTRY_PORTS, LocalRegistry, run_prefix

BASE_IMAGE = "localhost/bindery-base:bookworm"
JUPYTER_IMAGE = "localhost/bindery-jupyter:bookworm"
LAB_IMAGE = "localhost/bindery-jupyterlab:bookworm"  # JupyterLab and Notebook 7 on JUPYTER_IMAGE

# Every git server, API replay and registry of the tests listens on loopback, which Bindery refuses
# by default (app/netguard.py).  The tests allow it explicitly: apps made here read it from the
# environment, Stacks pass it on to their processes (tests/stack.py), configs loaded with an empty
# environment add LOOPBACK_ALLOWED.  tests/app/test_netguard.py shows the refusals without it.
LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"
LOOPBACK_ALLOWED = {"allowed_private_networks": LOOPBACK_NETWORKS.split(",")}
os.environ.setdefault("BINDERY_ALLOWED_PRIVATE_NETWORKS", LOOPBACK_NETWORKS)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    # The event notifiers of the apps made on it (app/sse.py) say they lost Redis once it stops, by
    # then into streams pytest has closed: that is the end of the session, not a logging error.
    logging.raiseExceptions = False
    server.stop()


@pytest.fixture
def app(redis_server: EmbeddedRedis) -> Flask:
    return create_app({"redis_url": redis_server.url, "launcher": "bench"})


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


# --- container engine ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def docker_host() -> str:
    host = os.environ.get("DOCKER_HOST")
    if not host:
        pytest.fail("DOCKER_HOST is not set: run the tests with `make test`, which starts the engine")
    return host


#: Images removed only after every worker is done (pytest_sessionfinish on the controller): Podman
#: fails builds running meanwhile ("image not known", "layer not known") when an image is removed
#: while they list images or look for cached layers, and other workers build all the time.
_IMAGES_TO_REMOVE = "TESTS_IMAGES_TO_REMOVE"  # not BINDERY_*: the config refuses unknown ones


def remove_image_at_end(image: str) -> None:
    """Remove ``image`` (a name or an id this test made) from the engine once the whole suite has run."""
    with open(os.environ[_IMAGES_TO_REMOVE], "a", encoding="utf-8") as fh:
        fh.write(image + "\n")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller, whose environment the workers inherit
        path = Path(tempfile.mkdtemp(prefix="bindery-test-")) / "images-to-remove"
        path.touch()
        os.environ[_IMAGES_TO_REMOVE] = str(path)
        os.environ[RUN_ID_VARIABLE] = uuid.uuid4().hex[:8]
        _start_run_registry()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput") or not os.environ.get(_IMAGES_TO_REMOVE):
        return
    path = Path(os.environ[_IMAGES_TO_REMOVE])
    images = dict.fromkeys(path.read_text().split()) if path.exists() else {}
    if os.environ.get("DOCKER_HOST"):
        client = docker_client(os.environ["DOCKER_HOST"])
        mark = f"-{os.environ[RUN_ID_VARIABLE]}-"  # what the Stacks of this run built (tests/stack.py run_prefix)
        # By name, never by id: a build can give an image another holds too (a Dockerfile that
        # adds nothing to the base has the base's id), and removing the id would take the base.
        built = {tag for image in client.images.list() for tag in image.tags if mark in tag}
        for image in [*images, *built]:
            try:
                client.images.remove(image, force=image in built)  # a name: an image with other names keeps them
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as error:
                print(f"could not remove {image}: {error}", file=sys.stderr)
    path.unlink(missing_ok=True)
    path.parent.rmdir()


def pytest_unconfigure(config: pytest.Config) -> None:
    for registry in _run_registry:  # the controller's (exactly the process it started)
        registry.stop()
        shutil.rmtree(registry.directory, ignore_errors=True)
    _run_registry.clear()


@pytest.fixture(scope="session")
def engine(docker_host: str) -> docker.DockerClient:
    client = docker_client(docker_host)
    for image in (BASE_IMAGE, JUPYTER_IMAGE):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"{image} is missing: `make test` builds it (scripts/base-image.sh)")
    return client


@pytest.fixture
def launched_containers(engine: docker.DockerClient) -> Iterator[list[str]]:
    """Launch ids whose containers the test started; removed by id afterwards."""
    launch_ids: list[str] = []
    yield launch_ids
    for launch_id in launch_ids:
        for container in engine.containers.list(ignore_removed=True,
                all=True, filters={"label": [f"org.bindery.launch={launch_id}"]}):
            container.remove(force=True)


# --- the registry: one for the whole run ------------------------------------------------------

#: One Registry v2 serves every xdist worker: the controller starts it (pytest_configure), the
#: workers inherit where.  A push to a registry that has a layer already is a cross-repository mount
#: (0.1 s); to a registry that has not, a gzip of every layer (13 s of the engine's CPU for the
#: Jupyter image), which a registry per worker paid again on each.  The first worker to need the
#: registry seeds it with the layers of the test images (every test image builds FROM them); the
#: others wait for that.
_REGISTRY_DIR, _REGISTRY_ERROR = "TESTS_REGISTRY_DIR", "TESTS_REGISTRY_ERROR"
_run_registry: list[LocalRegistry] = []


def _start_run_registry() -> None:
    """Start the run's registry; a failure fails the tests that need it (say so), not the run."""
    if REGISTRY_PORT not in TRUSTED_REGISTRY_PORTS:
        os.environ[_REGISTRY_ERROR] = (f"TEST_REGISTRY_PORT {REGISTRY_PORT} is not one the engine trusts "
                                       f"({TRUSTED_REGISTRY_PORTS.start}-{TRUSTED_REGISTRY_PORTS.stop - 1})")
        return
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", REGISTRY_PORT)) == 0:  # someone else's registry would answer
            os.environ[_REGISTRY_ERROR] = (f"127.0.0.1:{REGISTRY_PORT} is taken (another run or a benchmark?): "
                                           "give each concurrent run its own TEST_REGISTRY_PORT")
            return
    directory = Path(tempfile.mkdtemp(prefix="bindery-test-registry-"))
    try:
        _run_registry.append(LocalRegistry(directory, REGISTRY_PORT).start())
    except RuntimeError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        os.environ[_REGISTRY_ERROR] = (f"{exc}\n(is another run using 127.0.0.1:{REGISTRY_PORT}? give each "
                                       "concurrent run its own TEST_REGISTRY_PORT)")
        return
    os.environ[_REGISTRY_DIR] = str(directory)


def _seed(directory: Path) -> None:
    """Push the test images' layers once (the first worker to ask does; the others wait)."""
    try:
        fd = os.open(directory / "seeding", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        deadline = time.monotonic() + 600
        while not (directory / "seeded").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        return
    os.close(fd)
    try:
        client = docker_client(os.environ["DOCKER_HOST"])
        repository = run_prefix(f"127.0.0.1:{REGISTRY_PORT}/bindery-seed") + "layers"
        for image in (LAB_IMAGE, JUPYTER_IMAGE):  # the Lab image's layers are the Jupyter image's and more
            try:
                client.images.get(image).tag(repository, "seed")
            except docker.errors.ImageNotFound:
                continue
            remove_image_at_end(f"{repository}:seed")
            for line in client.images.push(repository, "seed", stream=True, decode=True):
                if "error" in line:
                    print(f"seeding the registry: {line['error']}", file=sys.stderr)
            break
    finally:
        (directory / "seeded").touch()


@pytest.fixture(scope="session")
def registry(docker_host: str) -> str:
    """The URL of the run's reference Registry v2 on loopback, seeded with the test images' layers."""
    directory = os.environ.get(_REGISTRY_DIR)
    if not directory:
        pytest.fail(os.environ.get(_REGISTRY_ERROR) or "the run's registry was not started (pytest_configure)")
    _seed(Path(directory))
    return f"http://127.0.0.1:{REGISTRY_PORT}"


@pytest.fixture(scope="module")
def build_counter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A repo2docker command that records each run, then runs the real repo2docker."""
    return counting_repo2docker(tmp_path_factory.mktemp("r2d"))


def counting_repo2docker(directory: Path) -> tuple[Path, list[str]]:
    """(file with one line per run, command): the real repo2docker, each run recorded (tests, bench/)."""
    counter = directory / "runs"
    counter.touch()
    wrapper = directory / "repo2docker"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {counter}\nexec {sys.executable} -m repo2docker "$@"\n')
    wrapper.chmod(0o755)
    return counter, [str(wrapper)]


# --- test repositories ------------------------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class GitServer:
    """Bare repositories served over dumb HTTP on loopback, as a public git host would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def make_repo(self, dockerfile: str, *, branch: str = "main") -> tuple[str, str]:
        """A new repository holding the Dockerfile; returns (clone URL, commit sha)."""
        name = f"repo-{uuid.uuid4().hex[:10]}"
        work = self.root / f"{name}-work"
        work.mkdir()
        (work / "Dockerfile").write_text(dockerfile)
        git = ["git", "-c", "user.name=Bindery Tests", "-c", "user.email=tests@bindery.invalid"]
        subprocess.run([*git, "init", "-q", "-b", branch, str(work)], check=True)
        subprocess.run([*git, "-C", str(work), "add", "Dockerfile"], check=True)
        subprocess.run([*git, "-C", str(work), "commit", "-q", "-m", "test repo"], check=True)
        bare = self.root / f"{name}.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
        subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
        sha = subprocess.run(["git", "-C", str(bare), "rev-parse", branch], check=True,
                             capture_output=True, text=True).stdout.strip()
        return f"{self.url}/{name}.git", sha

    def commit(self, repo_url: str, dockerfile: str, *, branch: str = "main") -> str:
        """A new commit on the repository's branch; returns its sha."""
        name = repo_url.rsplit("/", 1)[1].removesuffix(".git")
        work, bare = self.root / f"{name}-work", self.root / f"{name}.git"
        (work / "Dockerfile").write_text(dockerfile)
        git = ["git", "-c", "user.name=Bindery Tests", "-c", "user.email=tests@bindery.invalid", "-C", str(work)]
        subprocess.run([*git, "commit", "-q", "-am", "next"], check=True)
        subprocess.run([*git, "push", "-q", str(bare), branch], check=True)
        subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
        return subprocess.run(["git", "-C", str(bare), "rev-parse", branch], check=True,
                              capture_output=True, text=True).stdout.strip()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    server = GitServer(tmp_path_factory.mktemp("git"))
    yield server
    server.stop()


# --- headless Chromium (Debian's) driven by Playwright: tests/templates/ and tests/system/ ------
# One definition, so a worker that runs both starts one Playwright (a second one in the same
# thread fails: "Playwright Sync API inside the asyncio loop").

@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from tests.templates.conftest import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (scripts/test-setup.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    from tests.templates.conftest import VIEWPORT

    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


# --- pytest-xdist: which tests share a worker, and which are handed out first ------------------

#: With -n, xdist hands out groups of tests, each run whole by one worker so they share its module
#: fixtures (a module's Stack): a test file is one group unless SPLIT gives some of its tests a
#: group of their own (tests that share none of the module's expensive fixtures, such as a test
#: with its own Stack, or each parameter of a parametrized module Stack).  Groups are handed out in
#: collection order, which SLOWEST_FIRST sets (measured with --durations): a long group handed out
#: last would leave the other workers idle at the end.
SPLIT: dict[str, str] = {  # node id regex -> group
    r"tests/system/test_build_api\.py::test_twenty_concurrent": "build_api-twenty",
    r"tests/system/test_build_api\.py::test_quota_per_repository": "build_api-quota",
    r"tests/system/test_build_api\.py::test_registry_down": "build_api-registry-down",
    r"tests/system/test_outages\.py::test_engine_down": "outages-engine",
    r"tests/system/test_outages\.py::test_hub_down": "outages-hub",
    r"tests/system/test_metrics\.py::test_worker_serves": "metrics-worker",
    r"tests/system/test_redis_restart\.py::.*\[embedded\]": "redis_restart-embedded",
    r"tests/system/test_redis_restart\.py::.*\[external\]": "redis_restart-external",
    r"tests/providers/test_spec_properties\.py::test_\w+\[(\w+)\]": r"spec_properties-\1",
    # renders only, no shared fixture: the chart's network and Redis half runs beside the rest
    r"tests/charts/test_bindery_chart\.py::test_\w*(network|polic|egress|redis|dns|web_accepts|users_pods)":
        "chart-policies",
}
SLOWEST_FIRST: list[str] = [  # the suite's own summary at the end lists the slowest groups
    "tests/system/test_default_url.py", "tests/tasks/backends/test_warm_pool.py",
    "tests/system/test_provider_launches.py", "tests/system/test_loading.py",
    "tests/app/test_fuzz_http.py",  # CPU-bound: 1 to 3 minutes by how crowded the cores are when it runs
    "tests/system/test_build_api.py",
    "tests/tasks/backends/test_jupyterhub_launcher.py", "tests/charts/test_bindery_chart.py",
    "tests/test_dockerfile.py", "redis_restart-embedded", "tests/system/test_build_worker_crash.py",
    "tests/system/test_runner_supervision.py", "tests/system/test_auth.py", "tests/system/test_secrets.py",
    "tests/system/test_content_reuse.py", "tests/tasks/backends/test_docker_launcher.py",
    "tests/system/test_cross_origin.py", "chart-policies", "outages-hub", "build_api-twenty",
    "tests/system/test_launch_worker_crash.py", "redis_restart-external",
    "tests/system/test_proxy.py", "tests/system/test_last_good.py", "tests/system/test_abandon.py",
    "tests/system/test_build_logs.py", "tests/system/test_metrics.py", "tests/system/test_build_on_push.py",
    "tests/system/test_outages.py", "tests/templates/test_js_modules.py", "tests/system/test_warm_pool.py",
    "tests/tasks/backends/test_user_network.py", "tests/templates/test_index.py", "tests/system/test_prebuilt.py",
    "tests/test_docs.py", "tests/app/test_runner.py", "outages-engine", "build_api-quota", "metrics-worker",
    "tests/tasks/backends/test_thin_build_pod.py", "tests/system/test_front_door.py", "build_api-registry-down",
    *(f"spec_properties-{prefix}" for prefix in ("figshare", "zenodo", "gl", "dataverse", "image", "gh", "gist",
                                                 "hydroshare", "ckan", "git", "swh")),
]


def xdist_group_of(nodeid: str) -> str:
    """The group of a test: its entry in SPLIT, else its file."""
    for pattern, group in SPLIT.items():
        found = re.match(pattern, nodeid)
        if found:
            return found.expand(group)
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slowest groups first (every worker collects, and so sorts, the same way)."""
    rank = {group: n for n, group in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(xdist_group_of(item.nodeid), len(rank)))  # stable: files stay together


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's loadscope scheduling by xdist_group_of (its loadgroup marks do not reach this pytest's node ids)."""
    if config.getvalue("dist") not in ("load", "loadscope", "loadfile", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group_of(nodeid)

    config.option.loadscopereorder = False  # collection order: slowest first
    return GroupScheduling(config, log)


#: seconds (setup + call + teardown) per group, summed on the controller from every worker's reports
_GROUP_SECONDS: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _GROUP_SECONDS[xdist_group_of(report.nodeid)] += report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The slowest groups, for keeping SLOWEST_FIRST in order (a worker's share is about total / workers)."""
    if not _GROUP_SECONDS or hasattr(terminalreporter.config, "workerinput"):
        return
    slowest = sorted(_GROUP_SECONDS.items(), key=lambda item: -item[1])[:20]
    terminalreporter.write_sep("-", f"slowest test groups ({sum(_GROUP_SECONDS.values()):.0f} s in all)")
    for group, seconds in slowest:
        terminalreporter.write_line(f"{seconds:7.1f} s  {group}")
