"""Persistent build logs: a failed build's log stays shareable after the build, until retention."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator

import docker
import pytest
import redis
import requests

from app.build_log_store import TRUNCATED, BuildLog, read
from app.config import load_config
from app.redis_server import EmbeddedRedis
from tests.conftest import JUPYTER_IMAGE, REGISTRY_PORT, GitServer
from tests.stack import Stack, collect


def test_log_is_capped_with_a_notice(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    config = load_config({"build_log_max_bytes": 1024}, environ={})
    log = BuildLog(client, "/logs/git/x/" + "a" * 40, config)
    log.start(repo_url="http://127.0.0.1:1/x.git", ref="a" * 40)
    for n in range(100):
        log.append(f"line {n:03d} " + "x" * 20 + "\n")
    log.finish("failed")
    meta, text = read(client, "/logs/git/x/" + "a" * 40) or ({}, "")
    assert meta["status"] == "failed"
    assert text.startswith("line 000") and text.endswith(TRUNCATED)
    assert len(text.encode()) <= 1024 + len(TRUNCATED)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, registry: str, docker_host: str,
          engine: docker.DockerClient) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("logs"), {
        "registry_url": registry, "image_prefix": f"127.0.0.1:{REGISTRY_PORT}/bindery-test-",
        "docker_host": docker_host, "build_log_retention": 6,
    }).start()
    yield running
    running.stop()


@pytest.mark.integration
@pytest.mark.engine
def test_failed_build_log_is_served_after_the_build_and_expires(stack: Stack, git_server: GitServer) -> None:
    repo_url, sha = git_server.make_repo(f"FROM {JUPYTER_IMAGE}\nRUN echo step-one-output\nRUN false\n")
    final = collect(f"{stack.url}/build/git/{urllib.parse.quote(repo_url, safe='')}/main", timeout=300)[-1][1]
    assert final["phase"] == "failed"
    log_url = final["log_url"]
    assert log_url.startswith(stack.url + "/logs/git/") and log_url.endswith(sha)
    text = requests.get(log_url, params={"format": "text"}, timeout=10)
    assert text.status_code == 200
    assert "step-one-output" in text.text and "RUN false" in text.text, "the full log, not the tail"
    page = requests.get(log_url, headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200 and repo_url in page.text and "failed" in page.text
    time.sleep(7)
    assert requests.get(log_url, params={"format": "text"}, timeout=10).status_code == 404, "retention"


