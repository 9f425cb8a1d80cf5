"""`make run`'s runner for tests and benchmarks: ``python -m app.runner`` in a directory of its own.

Settings reach it as `make run`'s do, through the environment.  Its processes are found
as the runner's direct children, by pid; the runner is stopped with SIGINT (Ctrl-C), and
anything it started that is still there afterwards is reported, never killed by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import IO, Any

import psutil
import requests

from app.redis_server import free_port
from tests.clients import Client, wait_for
from tests.stack import ROOT

#: How each role's command line tells it apart (the runner's commands, app/runner.py).
SIGNATURES = {
    "redis": "redis-server",
    "build-worker": "-Q build",
    "launch-worker": "-n launch@",  # (the first of launch_workers; the others are launch2@, ...)
    "beat": " beat ",
    "web": "gunicorn",
    "flower": " flower ",
    "proxy": "configurable-http-proxy",
}


class Runner:
    """One `make run`: the embedded Redis, both workers, beat, gunicorn and Flower, supervised."""

    def __init__(self, directory: Path, settings: dict[str, Any]) -> None:
        self.directory = directory
        self.port = free_port()
        self.flower_port = int(settings.pop("flower_port", 0)) or free_port()
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.descendants: dict[int, psutil.Process] = {}
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "runner.log"

    def start(self, *, wait: bool = True, timeout: float = 90) -> Runner:
        self.directory.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("BINDERY_") and k not in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")}
        allowed = os.environ.get("BINDERY_ALLOWED_PRIVATE_NETWORKS")
        if allowed:
            env["BINDERY_ALLOWED_PRIVATE_NETWORKS"] = allowed
        # The proxy only where a test asks for it (test_proxy.py): the others reach servers directly.
        env.update({"PORT": str(self.port), "BINDERY_FLOWER_PORT": str(self.flower_port), "BINDERY_PROXY": "false",
                    "BINDERY_DATA_DIR": str(self.directory), "PYTHONUNBUFFERED": "1",
                    **{f"BINDERY_{name.upper()}": str(value) for name, value in self.settings.items()}})
        # Its output goes to a file: a pipe nobody reads would fill and stop every process behind it.
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "app.runner"], cwd=ROOT, env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if wait:
            try:
                self.wait_serving(timeout)
            except BaseException:
                self.stop()
                raise
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def remember_descendants(self) -> None:
        """Note every process the runner has started so far, to check after the stop that none is left."""
        assert self.process is not None
        try:
            for proc in psutil.Process(self.process.pid).children(recursive=True):
                self.descendants.setdefault(proc.pid, proc)
        except psutil.NoSuchProcess:
            pass

    def child(self, role: str) -> psutil.Process | None:
        """The running process of ``role`` (a direct child of the runner), if any."""
        assert self.process is not None
        for proc in psutil.Process(self.process.pid).children():
            try:
                if SIGNATURES[role] in " ".join(proc.cmdline()) + " " and proc.status() != psutil.STATUS_ZOMBIE:
                    return proc
            except psutil.NoSuchProcess:
                continue
        return None

    def wait_serving(self, timeout: float = 90) -> None:
        """Until /health is 200: web up, Redis, the engine, and both workers heard from."""
        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the runner exited with {self.process.returncode}:\n{self.output()[-4000:]}")
            try:
                return requests.get(f"{self.url}/health", timeout=5).status_code == 200
            except requests.RequestException:
                return False
        wait_for(healthy, timeout, lambda: f"the service to be healthy:\n{self.output()[-4000:]}")
        self.remember_descendants()

    def kill(self, role: str) -> tuple[int, float]:
        """SIGKILL the role's main process, as the OOM killer would; returns (pid, when)."""
        proc = self.child(role)
        assert proc is not None, f"no {role} running"
        self.remember_descendants()
        proc.send_signal(signal.SIGKILL)
        return proc.pid, time.monotonic()

    def wait_restarted(self, role: str, old_pid: int, timeout: float = 60) -> psutil.Process:
        def again() -> bool:
            proc = self.child(role)
            return proc is not None and proc.pid != old_pid
        wait_for(again, timeout,
                 lambda: f"{role} to be started again:\n{self.output()[-3000:]}")
        proc = self.child(role)
        assert proc is not None
        self.remember_descendants()
        return proc

    def stop(self) -> int | None:
        """Ctrl-C, as a user would; returns the runner's exit status."""
        if self.process is None:
            return None
        self.remember_descendants()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log:
            self._log.close()
            self._log = None
        return self.process.returncode

    def left_running(self, timeout: float = 30) -> list[int]:
        """Processes the runner started that are still alive (after ``stop``)."""
        _, alive = psutil.wait_procs(list(self.descendants.values()), timeout=timeout)
        return [proc.pid for proc in alive]


def launch_url(runner: Runner, repo_url: str, query: str = "") -> str:
    return f"{runner.url}/build/git/{urllib.parse.quote(repo_url, safe='')}/main{query}"


def follow(url: str, deadline: float = 300) -> Client:
    """A browser-like client (reconnects with Last-Event-ID) following one launch."""
    client = Client(url, deadline=deadline)
    client.start()
    return client


def ended(client: Client) -> bool:
    return bool(client.events) and client.events[-1][1].get("phase") in ("ready", "failed")


def wait_ended(client: Client, timeout: float) -> float:
    """Wait until the client's launch ended; returns when (monotonic)."""
    wait_for(lambda: ended(client), timeout, lambda: f"the launch to end: {client.events[-3:]}")
    return time.monotonic()
