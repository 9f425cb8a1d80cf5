"""Build backend ``docker``: repo2docker as a subprocess against the Docker-API engine.

repo2docker 2024.7.0 is pinned (newer releases need buildx, which Podman lacks).
Its ``--json-logs`` lines become ``fetching``/``building`` events.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from app.errors import BuildError
from app.extensions import engine, engine_url, redis_client
from providers.base import RepoProvider, check_safe, redact_url
from tasks.backends import environment

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]
_PHASES = {"fetching", "building"}

#: What Podman says when an image list races an image's removal (see _build_past_engine_races).
ENGINE_RACE = "image not known"


def repo2docker_command(config: dict[str, Any], repo: RepoProvider, launch: dict[str, Any],
                        config_file: str) -> list[str]:
    """The argument list (never a shell line); user input is checked and placed after ``--``."""
    base = config["repo2docker_command"] or [sys.executable, "-m", "repo2docker"]
    return [
        *base, "--config", config_file, "--json-logs", "--no-run",
        "--user-id", "1000", "--user-name", "jovyan",
        "--ref", check_safe(launch["resolved_ref"], "ref"),
        "--image-name", launch["image"],
        "--", check_safe(repo.repo_url(), "repository URL"),
    ]


# repo2docker 2024.7.0 tries Mercurial on every URL that does not end in .git and crashes
# when `hg` is missing; leave it out unless it is installed.
_CONTENT_PROVIDERS = """
import shutil
from repo2docker import contentproviders as cp
providers = [cp.Local, cp.Zenodo, cp.Figshare, cp.Dataverse, cp.Hydroshare, cp.Swhid, cp.CKAN, cp.Git]
if shutil.which("hg"):
    providers.insert(-1, cp.Mercurial)
c.Repo2Docker.content_providers = providers
"""


def _event(line: str, previous: str) -> dict[str, Any]:
    """One repo2docker output line as an event.

    ``--json-logs`` lines carry a phase; lines without one (and plain lines) belong
    to the phase before them.  repo2docker's own ``failed`` is shown as log: the
    build's one ``failed`` event is ours, raised when the process exits non-zero.
    """
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return {"phase": previous, "message": line + "\n"}
    phase = record.get("phase") if record.get("phase") in _PHASES else previous
    message = str(record.get("message", ""))
    return {"phase": phase, "message": message if message.endswith("\n") else message + "\n"}


def _dies_with_worker() -> list[str]:
    """A prefix that kills repo2docker when the worker process running it dies (even by SIGKILL).

    repo2docker runs in its own session (so a timeout can stop its whole group), which
    also keeps it out of reach of the worker's death: without this it would finish a
    build nobody reads while the re-delivered build runs a second one.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """repo2docker and anything it started (its session's group has its pid)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class DockerBuilder:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def _config_file(self, directory: str) -> str:
        path = os.path.join(directory, "repo2docker_config.py")
        kwargs = {"network_mode": self.config["build_network"]} if self.config["build_network"] else {}
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(f"c.Repo2Docker.extra_build_kwargs = {json.dumps(kwargs)}\n{_CONTENT_PROVIDERS}")
        return path

    def build(self, repo: RepoProvider, launch: dict[str, Any], emit: Emit) -> None:
        """A thin image when only content changed (tasks/backends/environment.py), else repo2docker."""
        reused, decision = environment.try_reuse(self.config, redis_client.client, engine.client, repo.repo_url(),
                                                 repo.repo2docker_env(), launch, emit)
        if reused:
            return
        self._build_past_engine_races(repo, launch, emit)
        if decision is not None and decision.reusable:
            environment.remember(redis_client.client, launch["repo_url"], decision.env_hash, launch["image"],
                                 launch["resolved_ref"])

    def _build_past_engine_races(self, repo: RepoProvider, launch: dict[str, Any], emit: Emit) -> None:
        """repo2docker, run once more when the engine lost track of an image it was listing.

        Podman answers an image list with 500 "image not known" when another image is removed
        while it lists them (another build's cleanup, an operator's prune): the engine's fault,
        not the repository's, and gone on the next try.
        """
        try:
            self._build(repo, launch, emit)
        except BuildError as error:
            if ENGINE_RACE not in error.message:
                raise
            log.warning("build %s: the engine lost an image while listing them; building again", launch["image"])
            emit({"phase": "building", "message": "The container engine lost track of an image while listing "
                                                  "them (another one was being removed); building again...\n"})
            self._build(repo, launch, emit)

    def _build(self, repo: RepoProvider, launch: dict[str, Any], emit: Emit) -> None:
        """Run one build to completion, or raise BuildError quoting the end of its log."""
        tail: deque[str] = deque(maxlen=self.config["build_log_tail"])
        env = {**os.environ, "DOCKER_HOST": engine_url(self.config), "GIT_TERMINAL_PROMPT": "0",
               **repo.repo2docker_env()}
        with tempfile.TemporaryDirectory(prefix="bindery-build-") as tmp:
            command = repo2docker_command(self.config, repo, launch, self._config_file(tmp))
            log.info("build %s: repo2docker for %s", launch["image"], redact_url(repo.repo_url()))
            proc = subprocess.Popen([*_dies_with_worker(), *command], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=tmp,
                                    text=True, errors="replace", start_new_session=True)
            timed_out = threading.Event()

            def stop() -> None:
                timed_out.set()
                _kill_group(proc)

            timer = threading.Timer(self.config["build_timeout"], stop)
            timer.start()
            phase = "fetching"
            try:
                assert proc.stdout is not None
                for raw in proc.stdout:
                    line = raw.rstrip("\n")
                    if not line:
                        continue
                    event = _event(line, phase)
                    phase = event["phase"]
                    tail.append(event["message"])
                    emit(event)
                code = proc.wait()
            finally:
                timer.cancel()
                if proc.poll() is None:
                    _kill_group(proc)
                    proc.wait()
        if code != 0:
            reason = (f"timed out after {self.config['build_timeout']} s" if timed_out.is_set()
                      else f"repo2docker exited with {code}")
            raise BuildError(f"Build failed ({reason}). Last lines of the log:\n" + "".join(tail))
