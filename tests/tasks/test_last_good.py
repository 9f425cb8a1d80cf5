"""Last good image: a broken second commit launches the first commit's image when allowed,
with a notice naming the commit; without the setting it fails clearly. Real stack and builds."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest
import requests

from tests.app.test_build_api import launch_id_of, quick_dockerfile
from tests.conftest import JUPYTER_IMAGE, REGISTRY_PORT, GitServer
from tests.stack import Stack, collect

pytestmark = [pytest.mark.integration, pytest.mark.engine]
BROKEN = f"FROM {JUPYTER_IMAGE}\nRUN echo broken && false\n"


def _stack(directory: Path, registry: str, docker_host: str, allow: bool) -> Stack:
    return Stack(directory, {"registry_url": registry, "docker_host": docker_host,
                             "image_prefix": f"127.0.0.1:{REGISTRY_PORT}/bindery-test-",
                             "launch_last_good_image": allow, "launch_ports": "19800-19849"}).start()


def test_broken_commit_gets_the_last_good_image_only_when_allowed(
        tmp_path: Path, git_server: GitServer, registry: str, docker_host: str,
        launched_containers: list[str]) -> None:
    repo_url, good_sha = git_server.make_repo(quick_dockerfile())
    url = f"/build/git/{urllib.parse.quote(repo_url, safe='')}/main"
    allowed = _stack(tmp_path / "allowed", registry, docker_host, allow=True)
    try:
        first = collect(allowed.url + url, timeout=300)
        launched_containers.append(launch_id_of(first))
        assert first[-1][1]["phase"] == "ready"
        bad_sha = git_server.commit(repo_url, BROKEN)
        events = collect(allowed.url + url, timeout=300)
        launched_containers.append(launch_id_of(events))
    finally:
        allowed.stop()
    notices = [data for _, data in events if data.get("fallback_ref")]
    assert notices and notices[0]["fallback_ref"] == good_sha
    assert bad_sha[:12] in notices[0]["message"] and good_sha[:12] in notices[0]["message"]
    ready = events[-1][1]
    assert ready["phase"] == "ready" and ready["image"].endswith(good_sha)
    assert requests.get(f"{ready['url']}api", params={"token": ready["token"]}, timeout=10).status_code == 200

    strict = _stack(tmp_path / "strict", registry, docker_host, allow=False)
    try:
        git_server.commit(repo_url, BROKEN + "# again\n")
        final = collect(strict.url + url, timeout=300)[-1][1]
    finally:
        strict.stop()
    assert final["phase"] == "failed" and "Build failed" in final["message"] and final["log_url"]
