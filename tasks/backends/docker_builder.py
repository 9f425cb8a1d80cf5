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
from app.extensions import ENGINE_API_VERSION, docker_client, engine, engine_url, redis_client
from providers.base import RepoProvider, check_safe, redact_url
from tasks.backends import environment, user_network

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]
_PHASES = {"fetching", "building"}

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


# The traitlets config every build runs with (a Python file, read by repo2docker's process).
#
# repo2docker 2024.7.0 tries Mercurial on every URL that does not end in .git and crashes
# when `hg` is missing; leave it out unless it is installed.
#
# Its own "is this image built already?" lists every image in the engine, and Podman answers
# that list with 500 "image not known" whenever another image is removed meanwhile (an
# operator's prune, another build's cleanup), failing the build. The build step has asked the
# engine for this exact image by name just before (tasks/steps/build.py), and repo2docker's
# check only ever matches names tagged ":latest", never ours: it is left out.
REPO2DOCKER_CONFIG = """
import shutil
from repo2docker import contentproviders as cp
from repo2docker.app import Repo2Docker
providers = [cp.Local, cp.Zenodo, cp.Figshare, cp.Dataverse, cp.Hydroshare, cp.Swhid, cp.CKAN, cp.Git]
if shutil.which("hg"):
    providers.insert(-1, cp.Mercurial)
c.Repo2Docker.content_providers = providers
Repo2Docker.find_image = lambda self: False
"""


def repo2docker_config(config: dict[str, Any]) -> str:
    """The ``--config`` file of every build (build pods get it in a ConfigMap).

    repo2docker's client speaks our API version too: its default asks the engine on every build.
    """
    return (f"c.Repo2Docker.extra_build_kwargs = {json.dumps(user_network.build_kwargs(config))}\n"
            f"c.DockerEngine.extra_init_args = {json.dumps({'version': ENGINE_API_VERSION})}\n{REPO2DOCKER_CONFIG}")


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
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(repo2docker_config(self.config))
        return path

    def build(self, repo: RepoProvider, launch: dict[str, Any], emit: Emit) -> None:
        """A thin image when only content changed (tasks/backends/environment.py), else repo2docker.

        Both run their user code (RUN steps, postBuild) in the build's own network
        (tasks/backends/user_network.py); images land in the engine's store either way.
        """
        try:
            with user_network.build_engine(self.config, engine_url(self.config), engine.client) as url:
                self._reuse_or_build(repo, launch, emit, url)
        except user_network.NetworkSetupError as exc:
            raise BuildError(f"Build failed: {exc}") from exc

    def _reuse_or_build(self, repo: RepoProvider, launch: dict[str, Any], emit: Emit, url: str) -> None:
        build_client = None if url == engine_url(self.config) else docker_client(url)
        try:
            reused, decision = environment.try_reuse(self.config, redis_client.client, engine.client,
                                                     repo.repo_url(), repo.repo2docker_env(), launch, emit,
                                                     build_client)
            if reused:
                return
            self._build(repo, launch, emit, url)
        finally:
            if build_client is not None:
                build_client.close()
        if decision is not None and decision.reusable:
            environment.remember(redis_client.client, launch["repo_url"], decision.env_hash, launch["image"],
                                 launch["resolved_ref"])

    def _build(self, repo: RepoProvider, launch: dict[str, Any], emit: Emit, url: str) -> None:
        """Run one build to completion on the engine at ``url``, or raise BuildError quoting the end of its log."""
        tail: deque[str] = deque(maxlen=self.config["build_log_tail"])
        env = {**os.environ, "DOCKER_HOST": url, "GIT_TERMINAL_PROMPT": "0",
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
                if proc.stdout is not None:
                    proc.stdout.close()
        if code != 0:
            reason = (f"timed out after {self.config['build_timeout']} s" if timed_out.is_set()
                      else f"repo2docker exited with {code}")
            raise BuildError(f"Build failed ({reason}). Last lines of the log:\n" + "".join(tail))
