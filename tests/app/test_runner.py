"""`make run`'s runner: everything starts, answers, and stops together on Ctrl-C (SIGINT)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from app.config import load_config
from app.redis_server import free_port
from app.runner import commands
from tests.stack import ROOT

pytestmark = pytest.mark.integration


def test_roles_and_queues() -> None:
    roles = commands(load_config(environ={}), python="python")
    assert set(roles) == {"build-worker", "launch-worker", "beat", "web", "flower"}
    build, launch = roles["build-worker"], roles["launch-worker"]
    assert build[build.index("-Q") + 1] == "build" and build[build.index("-P") + 1] == "prefork"
    assert launch[launch.index("-Q") + 1] == "launch" and launch[launch.index("-P") + 1] == "gevent"


def _wait(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer")


def test_runner_serves_with_embedded_redis_and_stops_everything_on_sigint(tmp_path: Path) -> None:
    port, flower = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINDERY_") and k != "REDIS_URL"}
    env.update({"PORT": str(port), "BINDERY_FLOWER_PORT": str(flower), "BINDERY_DATA_DIR": str(tmp_path),
                "BINDERY_LAUNCHER": "bench", "BINDERY_LAUNCH_CONCURRENCY": "20",
                "BINDERY_FLOWER_BASIC_AUTH": "operator:flower-secret"})
    runner = subprocess.Popen([sys.executable, "-m", "app.runner"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait(f"http://127.0.0.1:{port}/versions")
        _wait(f"http://127.0.0.1:{flower}/healthcheck")
        assert requests.get(f"http://127.0.0.1:{flower}/", timeout=5).status_code == 401, "Flower needs a login"
        assert requests.get(f"http://127.0.0.1:{flower}/", auth=("operator", "flower-secret"),
                            timeout=5).status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
        assert not any("flower-secret" in " ".join(p.cmdline()) for p in psutil.Process(runner.pid).children(True))
        children = psutil.Process(runner.pid).children(recursive=True)
        assert len(children) >= 6, "redis, two workers, beat, web and flower"
        assert (tmp_path / "redis" / "appendonlydir").exists() or any(
            p.name.startswith("appendonly") for p in (tmp_path / "redis").iterdir()), "persistence on"
        runner.send_signal(signal.SIGINT)
        assert runner.wait(60) == 0
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"still running after Ctrl-C: {[p.pid for p in alive]}"
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if runner.stdout:
            runner.stdout.close()
