"""A real Bindery for tests: its own Redis, gunicorn (gevent) and both Celery workers.

Processes are started here and stopped here, by the Popen objects we hold.  ``StackFactory``
is the one way the system tests (tests/system/) make Stacks: it fills in what every one needs
(engine, registry, this xdist worker's launch ports) and stops exactly the Stacks it started.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
import yaml

from app.redis_server import EmbeddedRedis, free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent

#: Launched servers listen on the host network, so Stacks of parallel pytest-xdist workers must not
#: share ports: each worker gets a block of its own (clear of 19000-19999, used by single runs).
LAUNCH_PORT_BASE, LAUNCH_PORT_BLOCK = 20000, 100


def worker_index() -> int:
    """This pytest-xdist worker's number (gw3 -> 3); 0 without xdist."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


#: The engine trusts plain HTTP on 127.0.0.1:5055-5062 only (scripts/engine.sh).  A run's registry,
#: shared by all its xdist workers (tests/conftest.py), listens on TEST_REGISTRY_PORT (5055 by
#: default; concurrent runs pick one each); a test that stops a registry has one of its own on
#: ``own_registry_port()``, the ports after it by worker number (``-n 6`` from 5055 takes 5055-5061).
TRUSTED_REGISTRY_PORTS = range(5055, 5063)
REGISTRY_PORT = int(os.environ.get("TEST_REGISTRY_PORT", "5055"))


def own_registry_port() -> int:
    """The port of this worker's own registry, for tests that stop it (outages)."""
    return REGISTRY_PORT + 1 + worker_index()


def launch_ports() -> tuple[int, int]:
    """(low, high): the launch ports of this worker's Stacks."""
    low = LAUNCH_PORT_BASE + LAUNCH_PORT_BLOCK * worker_index()
    return low, low + LAUNCH_PORT_BLOCK - 1


class Stack:
    def __init__(self, directory: Path, settings: dict[str, Any], *, beat: bool = False,
                 redis: Any = None, flower: bool = False) -> None:
        self.directory = directory
        # any server with start(), stop() and url (default: an embedded Redis of its own)
        self.redis = redis or EmbeddedRedis(directory / "redis")
        self.port = free_port()
        # Processes read settings from the YAML only (BINDERY_* is not passed on): the loopback
        # allowance of the test run (tests/conftest.py, bench/_harness.py) goes there.
        allowed = os.environ.get("BINDERY_ALLOWED_PRIVATE_NETWORKS")
        # launch_start_concurrency: the suite's workers crowd the cores, where starting a few at a
        # time loses (bench/README.md, burst.py); the line has tests of its own (tests/tasks/test_lock.py,
        # the docker launcher's), so a Stack starts servers as they come unless a test says otherwise.
        self.settings = {"port": self.port, "data_dir": str(directory), "launch_start_concurrency": 20,
                         "instance_name": f"test-{self.port}",
                         **({"allowed_private_networks": allowed} if allowed else {}), **settings}
        self.beat = beat
        self.flower_port = free_port() if flower else None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Stack:
        self.redis.start()
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "bindery.yaml"
        config.write_text(yaml.safe_dump({"redis_url": self.redis.url, **self.settings}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("BINDERY_")}
        metrics_dir = self.directory / "prometheus"
        metrics_dir.mkdir(exist_ok=True)
        env.update({"BINDERY_CONFIG": str(config), "PYTHONUNBUFFERED": "1",
                    "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
        env.pop("REDIS_URL", None)
        celery = [sys.executable, "-m", "celery", "-A", "worker"]
        concurrency = str(self.settings.get("launch_concurrency", 200))
        commands = {
            "web": [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            "launch": [*celery, "worker", "-Q", "launch", "-P", "gevent", "-c", concurrency,
                       "-n", f"launch-{self.port}@%h", "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
            "build": [*celery, "worker", "-Q", "build", "-P", "prefork", "-c", "1",
                      "-n", f"build-{self.port}@%h", "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
        }
        if self.beat:
            commands["beat"] = [*celery, "beat", "-s", str(self.directory / "beat-schedule")]
        if self.flower_port:
            commands["flower"] = [*celery, "flower", "--address=127.0.0.1", f"--port={self.flower_port}"]
        self._env, self._commands = env, commands
        for role in commands:
            self._spawn(role)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()  # nothing we started outlives a failed start
            raise
        return self

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for role, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{role} exited at start:\n{self.log(role)}")
            try:
                web = requests.get(f"{self.url}/versions", timeout=1).status_code == 200
            except requests.RequestException:
                web = False
            if web and all(b"ready." in (self.directory / f"{r}.log").read_bytes()
                           for r in ("launch", "build")):
                return
            time.sleep(0.2)
        raise RuntimeError("stack did not become ready:\n" + "\n".join(self.log(r) for r in self.processes))

    def _spawn(self, role: str) -> None:
        log = open(self.directory / f"{role}.log", "ab")
        self._logs.append(log)
        self.processes[role] = subprocess.Popen(self._commands[role], cwd=ROOT, env=self._env, stdout=log,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop_role(self, role: str) -> None:
        """Stop one process as a deploy would (SIGTERM, then SIGKILL after 20 s)."""
        stop_process(self.processes[role], 20)

    def start_role(self, role: str, timeout: float = 60) -> None:
        """Start one stopped (or killed) process again with its original command; wait until ready."""
        assert self.processes[role].poll() is not None, f"{role} is still running"
        path = self.directory / f"{role}.log"
        before = path.read_bytes().count(b"ready.")
        self._spawn(role)
        deadline = time.monotonic() + timeout
        while path.read_bytes().count(b"ready.") <= before and role != "web":
            if self.processes[role].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{role} did not start again:\n{self.log(role)}")
            time.sleep(0.1)

    def log(self, role: str) -> str:
        return (self.directory / f"{role}.log").read_text(errors="replace")[-5000:]

    def terminate(self) -> None:
        """SIGTERM to every running process of this Stack, without waiting."""
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()

    def stop(self) -> None:
        """Stop every process of this Stack (idempotent: a test may stop it before its factory does)."""
        self.terminate()
        for proc in self.processes.values():
            stop_process(proc, 20)
        self.redis.stop()
        for log in self._logs:
            log.close()


#: Set once per run by the controller (tests/conftest.py), inherited by every worker.
RUN_ID_VARIABLE = "TESTS_RUN_ID"


def run_prefix(base: str) -> str:
    """An image prefix only this run's images have: the end of the run removes exactly them
    (tests/conftest.py), so the engine does not fill up (and slow down) run after run."""
    return f"{base}{os.environ[RUN_ID_VARIABLE]}-"


class StackFactory:
    """Starts Stacks for the system tests; ``stop_all`` stops exactly those it started.

    Each Stack gets this worker's launch ports and, unless told otherwise, the shared container
    engine (``docker_host``) and the run's registry (``registry_url`` and an ``image_prefix``
    in it).  ``settings`` override any of these.  Fixtures are looked up only when a Stack needs
    them, so a Stack without engine or registry starts neither.
    """

    def __init__(self, request: Any, tmp_path_factory: Any) -> None:
        self.request = request
        self.tmp_path_factory = tmp_path_factory
        self.started: list[Stack] = []

    def __call__(self, name: str, settings: dict[str, Any] | None = None, *, engine: bool = True,
                 registry: bool = True, beat: bool = False, redis: Any = None, directory: Path | None = None,
                 start: bool = True, flower: bool = False) -> Stack:
        low, high = launch_ports()
        defaults: dict[str, Any] = {"launch_ports": f"{low}-{high}"}
        if engine:
            defaults["docker_host"] = self.request.getfixturevalue("docker_host")
            self.request.getfixturevalue("engine")  # the local base images are there
            defaults["image_prefix"] = run_prefix("localhost/bindery-test-")  # without a registry: kept in the engine
        if registry:
            defaults["registry_url"] = self.request.getfixturevalue("registry")
            defaults["image_prefix"] = run_prefix(f"127.0.0.1:{REGISTRY_PORT}/bindery-test-")
        stack = Stack(directory or self.tmp_path_factory.mktemp(name), {**defaults, **(settings or {})},
                      beat=beat, redis=redis, flower=flower)
        self.started.append(stack)
        return stack.start() if start else stack

    def stop_all(self) -> None:
        """Stop the Stacks started here.  Every process gets SIGTERM now; waiting for them to go
        (seconds each: Celery's warm shutdown) goes on in the background while the next tests
        run, and ``wait_stopped`` (at the end of the session) waits for the last of them."""
        stacks, self.started = list(reversed(self.started)), []
        for stack in stacks:
            stack.terminate()
        stopping = threading.Thread(target=lambda: [stack.stop() for stack in stacks], name="stop-stacks")
        stopping.start()
        _STOPPING.append(stopping)


_STOPPING: list[threading.Thread] = []


def wait_stopped() -> None:
    """Return once every Stack a factory stopped has stopped (processes gone, Redis down)."""
    while _STOPPING:
        _STOPPING.pop().join()


def read_events(url: str, *, headers: dict[str, str] | None = None, timeout: float = 300,
                stop_after: int | None = None) -> Iterator[tuple[str | None, dict[str, Any] | str]]:
    """Parse an event stream: yields (id, data) for events and (None, ':keepalive') for comments."""
    response = requests.get(url, headers={"Accept": "text/event-stream", **(headers or {})},
                            stream=True, timeout=timeout)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    event_id, data, count = None, [], 0
    try:
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith(":"):
                yield None, line
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
            elif line.startswith("id:"):
                event_id = line[3:].strip()
            elif line == "" and data:
                yield event_id, json.loads("\n".join(data))
                event_id, data = None, []
                count += 1
                if stop_after is not None and count >= stop_after:
                    return
    finally:
        response.close()


def collect(url: str, **kwargs: Any) -> list[tuple[str | None, dict[str, Any]]]:
    """All events of one launch until it ends (ready or failed)."""
    events = []
    for event_id, data in read_events(url, **kwargs):
        if isinstance(data, dict):
            events.append((event_id, data))
            if data.get("phase") in ("ready", "failed"):
                break
    return events


class LocalRegistry:
    """The reference Registry v2 (Debian's docker-registry) on 127.0.0.1:``port``.

    The engine trusts plain HTTP on 127.0.0.1:5000 and :5055-5062 only (scripts/engine.sh).
    """

    def __init__(self, directory: Path, port: int = 5055) -> None:
        self.directory = directory
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self, timeout: float = 20) -> LocalRegistry:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "config.yml"
        config.write_text(yaml.safe_dump({
            "version": 0.1, "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.directory / "data")},
                        "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{self.port}"},
        }))
        self._log = open(self.directory / "log", "wb")
        self.process = subprocess.Popen([shutil.which("docker-registry") or "docker-registry", "serve",
                                         str(config)], stdout=subprocess.DEVNULL, stderr=self._log,
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(f"{self.url}/v2/", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"registry did not start: {(self.directory / 'log').read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)
        if self._log:
            self._log.close()
            self._log = None
