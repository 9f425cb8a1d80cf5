"""Persistent build logs: a failed build's log stays shareable after the build, until retention."""

from __future__ import annotations

import time
import urllib.parse

import pytest
import requests

from tests.conftest import JUPYTER_IMAGE, GitServer
from tests.stack import Stack, StackFactory, collect

RETENTION = 20


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory) -> Stack:
    # long enough for the build itself on a busy machine (the log's record expires that long after
    # the build starts, and again after it ends)
    return make_module_stack("logs", {"build_log_retention": RETENTION})


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
    gone_by = time.monotonic() + RETENTION + 5
    while requests.get(log_url, params={"format": "text"}, timeout=10).status_code != 404:
        assert time.monotonic() < gone_by, "retention"
        time.sleep(0.5)
