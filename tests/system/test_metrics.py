"""A real launch moves BinderHub's metrics, and figures recorded in the Celery workers
reach the web's /metrics scrape (shared PROMETHEUS_MULTIPROC_DIR, as `make run` sets it up).
The same launch leaves a launch event and JSON log lines carrying its launch id."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.clients import wait_for
from tests.conftest import GitServer
from tests.stack import ROOT, Stack, StackFactory, collect

pytestmark = [pytest.mark.integration, pytest.mark.engine]


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory) -> Stack:
    return make_module_stack("metrics")


def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"{stack.url}/metrics", timeout=10).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def test_launch_moves_worker_metrics_into_the_web_scrape_and_emits_an_event(
        stack: Stack, git_server: GitServer, launched_containers: list[str]) -> None:
    from tests.system.test_build_api import launch_id_of, quick_dockerfile

    repo_url, sha = git_server.make_repo(quick_dockerfile())
    before = scrape(stack)
    events = collect(f"{stack.url}/build/git/{urllib.parse.quote(repo_url, safe='')}/main", timeout=300)
    launch_id = launch_id_of(events)
    launched_containers.append(launch_id)
    assert events[-1][1]["phase"] == "ready", events[-3:]
    names = ("binderhub_build_count_total", "binderhub_launch_count_total")

    def counted() -> bool:  # the worker counts the launch just after it sends `ready`
        return all(value(scrape(stack), name, status="success", repo=repo_url) for name in names)

    wait_for(counted, 10, "the build and the launch in the web's scrape")
    after = scrape(stack)
    for name in names:
        assert value(after, name, status="success", repo=repo_url) - value(before, name, repo=repo_url) == 1
    assert value(after, "binderhub_build_time_seconds_count", status="success") > \
        value(before, "binderhub_build_time_seconds_count", status="success")
    assert value(after, "binderhub_launch_time_seconds_count", status="success", retries="0") > \
        value(before, "binderhub_launch_time_seconds_count", status="success", retries="0")
    assert ("binderhub_inprogress_builds", ()) in after and ("binderhub_inprogress_launches", ()) in after
    assert value(after, "flask_http_request_total") > 0, "the web's own request metrics are there too"

    spec = f"{urllib.parse.quote(repo_url, safe='')}/main"
    lines = [json.loads(line) for line in (stack.directory / "launch-events.jsonl").read_text().splitlines()]
    mine = [event for event in lines if event["spec"] == spec]
    assert len(mine) == 1 and mine[0]["ref"] == sha and mine[0]["provider"] == "Git"
    counted = subprocess.run([sys.executable, "-m", "app.cli", "events", f"git/{spec}", "--days", "1"],
                             cwd=ROOT, env={"BINDERY_CONFIG": str(stack.directory / "bindery.yaml"),
                                            "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, check=True).stdout
    assert counted.startswith("1 launches")

    worker_lines = [json.loads(line) for line in (stack.directory / "launch.log").read_text().splitlines()
                    if line.startswith("{")]
    assert any(line.get("launch_id") == launch_id for line in worker_lines), "JSON logs carry the launch id"


def test_failed_launch_is_counted(stack: Stack) -> None:
    before = scrape(stack)
    url = f"{stack.url}/build/git/{urllib.parse.quote('http://127.0.0.1:9/none.git', safe='')}/main"
    assert collect(url, timeout=60)[-1][1]["phase"] == "failed"
    expected = value(before, "binderhub_launch_count_total", status="failure") + 1

    def counted() -> bool:  # the worker counts the launch just after it sends `failed`
        return value(scrape(stack), "binderhub_launch_count_total", status="failure") >= expected

    wait_for(counted, 10, "the failed launch in the web's scrape")
    assert value(scrape(stack), "binderhub_launch_count_total", status="failure") == expected


def test_worker_serves_its_own_metrics_when_configured(make_stack: StackFactory) -> None:
    from app.redis_server import free_port

    port = free_port()
    running = make_stack("worker-metrics", {"launcher": "bench", "worker_metrics_port": port},
                         engine=False, registry=False)
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        running.stop()
    assert "# TYPE binderhub_github_rate_limit_remaining gauge" in text
