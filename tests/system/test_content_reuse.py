"""Content-only commits on a whole Bindery (web, workers, Redis, registry, engine), with real builds.

One stack for the module.  Repositories are Dockerfile repositories FROM the local Jupyter image
(itself FROM the local base image): repo2docker's other buildpacks need hosts we cannot reach.
The counting repo2docker (tests/conftest.py build_counter) tells full builds from reuses.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from tasks.backends.docker_launcher import INSTANCE
from tests.conftest import JUPYTER_IMAGE, GitServer
from tests.stack import Stack, StackFactory, collect

pytestmark = [pytest.mark.integration, pytest.mark.engine]

GIT = ["git", "-c", "user.name=Bindery Tests", "-c", "user.email=tests@bindery.invalid"]


def make_repo(server: GitServer, files: dict[str, str]) -> str:
    """A bare repository on the test git server holding ``files``; returns its clone URL."""
    name = f"repo-{uuid.uuid4().hex[:10]}"
    work = server.root / f"{name}-work"
    work.mkdir()
    subprocess.run([*GIT, "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(server.root / f"{name}.git")], check=True,
                   capture_output=True)
    url = f"{server.url}/{name}.git"
    commit(server, url, files)
    return url


def commit(server: GitServer, repo_url: str, files: dict[str, str], remove: tuple[str, ...] = ()) -> str:
    name = repo_url.rsplit("/", 1)[1].removesuffix(".git")
    work, bare = server.root / f"{name}-work", server.root / f"{name}.git"
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    for path in remove:
        (work / path).unlink()
    subprocess.run([*GIT, "-C", str(work), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(work), "commit", "-q", "-m", "next"], check=True)
    subprocess.run([*GIT, "-C", str(work), "push", "-q", str(bare), "main"], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    return subprocess.run(["git", "-C", str(bare), "rev-parse", "main"], check=True, capture_output=True,
                          text=True).stdout.strip()


def notebook(text: str) -> str:
    return json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": [text]}], "metadata": {},
                       "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory, engine: docker.DockerClient,
          build_counter: tuple[Path, list[str]]) -> Iterator[Stack]:
    running = make_module_stack("reuse", {
        "repo2docker_command": build_counter[1], "keepalive_interval": 1, "launch_timeout": 120,
        "default_url": "/"})
    yield running
    instance = running.settings["instance_name"]  # the servers this module's launches started
    for container in engine.containers.list(ignore_removed=True,
            all=True, filters={"label": [f"{INSTANCE}={instance}"]}):
        container.remove(force=True)


def launch(stack: Stack, repo_url: str) -> tuple[dict[str, Any], str]:
    """(ready event, every message) of a launch of the repository's main branch."""
    events = collect(f"{stack.url}/build/git/{urllib.parse.quote(repo_url, safe='')}/main", timeout=600)
    final = events[-1][1]
    assert final["phase"] == "ready", events
    return final, "".join(str(data.get("message", "")) for _, data in events)


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines())


def dockerfile(copy: str) -> str:
    return f"FROM {JUPYTER_IMAGE}\n{copy}\nRUN echo {uuid.uuid4().hex} > /tmp/build-id\n"


def test_a_content_only_commit_reuses_the_environment_and_the_server_has_the_new_notebook(
        stack: Stack, git_server: GitServer, build_counter: tuple[Path, list[str]]) -> None:
    counter = build_counter[0]
    repo_url = make_repo(git_server, {
        "Dockerfile": dockerfile("COPY requirements.txt /tmp/requirements.txt"),
        "requirements.txt": "# nothing to install\n", "analysis.ipynb": notebook("first"),
        "old.txt": "gone soon"})
    before = runs(counter)
    ready, log = launch(stack, repo_url)
    assert runs(counter) == before + 1 and "Full build: environment" in log
    first_sha = ready["image"].rsplit(":", 1)[1]

    second_sha = commit(git_server, repo_url, {"analysis.ipynb": notebook("second")}, remove=("old.txt",))
    ready, log = launch(stack, repo_url)
    assert runs(counter) == before + 1, "a content-only commit must not run repo2docker"
    assert f"environment unchanged since {first_sha}: reused" in log
    assert ready["image"].endswith(f":{second_sha}")  # the image name of the commit, as always
    contents = requests.get(f"{ready['url']}api/contents/analysis.ipynb", params={"token": ready["token"]},
                            timeout=10)
    assert contents.status_code == 200 and "second" in str(contents.json()["content"])
    assert contents.json()["writable"]  # owned by the server's user, as repo2docker copies content
    listing = requests.get(f"{ready['url']}api/contents/", params={"token": ready["token"]}, timeout=10).json()
    assert "old.txt" not in {item["name"] for item in listing["content"]}

    commit(git_server, repo_url, {"requirements.txt": "# still nothing, but changed\n"})
    _, log = launch(stack, repo_url)
    assert runs(counter) == before + 2 and "Full build: environment" in log



def test_a_dockerfile_copying_the_whole_repository_always_gets_a_full_build(
        stack: Stack, git_server: GitServer, build_counter: tuple[Path, list[str]]) -> None:
    counter = build_counter[0]
    repo_url = make_repo(git_server, {"Dockerfile": dockerfile("COPY . /home/jovyan/"),
                                      "analysis.ipynb": notebook("first")})
    before = runs(counter)
    _, log = launch(stack, repo_url)
    assert "Full build: the Dockerfile copies the whole repository (COPY . …)" in log
    commit(git_server, repo_url, {"analysis.ipynb": notebook("second")})
    _, log = launch(stack, repo_url)
    assert runs(counter) == before + 2 and "reused" not in log
