"""`python -m app.cli systemd`: unit files that systemd itself accepts, with the runner's commands and policy."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from app.cli import main
from app.config import load_config
from app.runner import commands
from app.systemd_units import Install, quote, units


def exec_start(text: str) -> list[str]:
    """ExecStart= of a unit, split and unescaped as systemd does (for the arguments we write)."""
    line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    return [arg.replace("%%", "%").replace("$$", "$") for arg in shlex.split(line[len("ExecStart="):])]


def settings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith(("#", "["))]


def test_each_role_runs_the_runners_command_under_its_restart_policy() -> None:
    config = load_config(environ={"BINDERY_RUNNER_RESTART_LIMIT": "7", "BINDERY_RUNNER_RESTART_WINDOW": "90"})
    install = Install(directory="/opt/bindery", python="/opt/bindery/.venv/bin/python", redis_port=6379,
                      systemd_version=255)
    files = units(config, install)
    roles = commands({**config, "data_dir": "/var/lib/bindery"}, python=install.python)
    assert set(files) == {f"bindery-{role}.service" for role in [*roles, "redis"]} | {"bindery.target"}
    for role, command in roles.items():
        text = files[f"bindery-{role}.service"]
        assert exec_start(text) == command, role
        lines = settings(text)
        for expected in ("Restart=on-failure", "StartLimitBurst=7", "StartLimitIntervalSec=90", "RestartSec=1",
                         "RestartMaxDelaySec=30", "User=bindery", "WorkingDirectory=/opt/bindery",
                         "Environment=REDIS_URL=redis://127.0.0.1:6379/0", "PartOf=bindery.target",
                         "Environment=BINDERY_REDIS_PASSWORD_FILE=/var/lib/bindery/redis/password",
                         "After=network-online.target bindery-redis.service", "WantedBy=bindery.target"):
            assert expected in lines, (role, expected)
    assert "-n build@%%h" in files["bindery-build-worker.service"], "systemd's %h escaped for Celery's"
    redis = exec_start(files["bindery-redis.service"])
    assert redis[redis.index("--appendonly") + 1] == "yes" and redis[redis.index("--port") + 1] == "6379"
    assert redis[redis.index("--dir") + 1] == "/var/lib/bindery/redis"
    assert "StateDirectory=bindery bindery/redis" in settings(files["bindery-redis.service"])
    wants = next(line for line in files["bindery.target"].splitlines() if line.startswith("Wants="))
    assert sorted(wants[6:].split()) == sorted(name for name in files if name.endswith(".service"))


def test_an_older_systemd_gets_the_growing_delay_as_comments_only() -> None:
    install = Install(directory="/opt/bindery", python="/usr/bin/python3", systemd_version=252)
    text = units(load_config(environ={"REDIS_URL": "redis://127.0.0.1:6379/0"}), install)["bindery-web.service"]
    assert "RestartSteps=5" not in settings(text) and "# RestartSteps=5" in text
    assert "bindery-redis.service" not in text, "Redis is the operator's (redis_url)"


def test_arguments_are_quoted_for_systemd() -> None:
    assert quote("build@%h") == "build@%%h"
    assert quote("60 1") == '"60 1"'
    assert quote("") == '""'
    assert quote('a"b$c\\') == '"a\\"b$$c\\\\"'


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_accepts_the_written_units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("BINDERY_CONFIG", raising=False)
    assert main(["systemd", "--output", str(tmp_path)]) == 2, "no Redis: says so instead of writing units"
    assert main(["systemd", "--output", str(tmp_path), "--redis-port", "6379"]) == 0
    names = sorted(path.name for path in tmp_path.iterdir())
    launch_workers = len(os.sched_getaffinity(0))  # launch_workers 0: one launch worker unit per core
    assert len(names) == 6 + launch_workers, names
    result = subprocess.run(["systemd-analyze", "verify", *names], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
