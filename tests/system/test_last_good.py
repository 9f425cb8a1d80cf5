"""Last good image: a broken second commit launches the first commit's image when allowed,
with a notice naming the commit; without the setting it fails clearly. Real stack and builds."""

from __future__ import annotations

import urllib.parse

import pytest
import requests

from tests.conftest import JUPYTER_IMAGE, GitServer
from tests.stack import Stack, StackFactory, collect
from tests.system.test_build_api import launch_id_of, quick_dockerfile

pytestmark = [pytest.mark.integration, pytest.mark.engine]
BROKEN = f"FROM {JUPYTER_IMAGE}\nRUN echo broken && false\n"


def _stack(make_stack: StackFactory, name: str, allow: bool) -> Stack:
    return make_stack(name, {"launch_last_good_image": allow})


def test_broken_commit_gets_the_last_good_image_only_when_allowed(
        make_stack: StackFactory, git_server: GitServer, launched_containers: list[str]) -> None:
    repo_url, good_sha = git_server.make_repo(quick_dockerfile())
    url = f"/build/git/{urllib.parse.quote(repo_url, safe='')}/main"
    allowed = _stack(make_stack, "allowed", allow=True)
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

    strict = _stack(make_stack, "strict", allow=False)
    try:
        git_server.commit(repo_url, BROKEN + "# again\n")
        final = collect(strict.url + url, timeout=300)[-1][1]
    finally:
        strict.stop()
    assert final["phase"] == "failed" and "Build failed" in final["message"] and final["log_url"]
