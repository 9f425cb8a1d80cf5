"""The build API end to end, on real parts.

Real: gunicorn (gevent) serving the app, Celery build and launch workers, an
embedded Redis, the reference Registry v2 on loopback, repo2docker 2024.7.0
building through the Podman engine, Jupyter servers in containers, and git
repositories served over HTTP on loopback.  Nothing of ours is mocked.
"""

from __future__ import annotations

import concurrent.futures
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
import redis
import requests

from providers.base import image_name
from tasks.lock import BuildLock
from tests.conftest import BASE_IMAGE, JUPYTER_IMAGE, GitServer
from tests.stack import Stack, StackFactory, collect, read_events

pytestmark = [pytest.mark.integration, pytest.mark.engine]

E2E_DOCKERFILE = f"""FROM {BASE_IMAGE}
RUN useradd --create-home --uid 1000 jovyan \\
 && python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-cache-dir jupyter-server
ENV PATH=/opt/venv/bin:/usr/bin:/bin
USER jovyan
WORKDIR /home/jovyan
"""


def quick_dockerfile() -> str:
    """A new image in seconds: Jupyter comes from the local Jupyter base."""
    return f"FROM {JUPYTER_IMAGE}\nRUN echo {uuid.uuid4().hex} > /home/jovyan/.build-id\n"


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory, build_counter: tuple[Path, list[str]]) -> Stack:
    return make_module_stack("stack", {
        "repo2docker_command": build_counter[1],
        "keepalive_interval": 1,
        "launch_idle_timeout": 600,
        "launch_timeout": 180,
        "build_lock_ttl": 6,
    })


def build_url(stack: Stack, repo_url: str, ref: str, query: str = "") -> str:
    return f"{stack.url}/build/git/{urllib.parse.quote(repo_url, safe='')}/{ref}{query}"


def runs(counter: Path, sha: str) -> int:
    return sum(sha in line for line in counter.read_text().splitlines())


def launch_id_of(events: list[tuple[str | None, dict[str, Any]]]) -> str:
    ids = {event_id.split("_")[0] for event_id, _ in events if event_id}
    assert len(ids) == 1, f"one launch per request, got {ids}"
    return ids.pop()


def assert_server_answers(ready: dict[str, Any]) -> None:
    response = requests.get(f"{ready['url']}api", params={"token": ready["token"]}, timeout=10)
    assert response.status_code == 200, response.text
    assert "version" in response.json()
    assert requests.get(f"{ready['url']}api/status", timeout=10).status_code == 403, \
        "without the token the server must refuse"


def test_launch_builds_pushes_and_serves_then_reuses_the_image(
        stack: Stack, git_server: GitServer, build_counter: tuple[Path, list[str]],
        launched_containers: list[str], engine: docker.DockerClient, registry: str) -> None:
    repo_url, sha = git_server.make_repo(E2E_DOCKERFILE + f"# {uuid.uuid4().hex}\n")
    events = collect(build_url(stack, repo_url, "main"), timeout=900)
    launched_containers.append(launch_id_of(events))
    phases = [data["phase"] for _, data in events]
    assert phases[-1] == "ready", events[-3:]
    order = ["waiting", "building", "pushing", "built", "launching", "ready"]
    firsts = [phases.index(phase) for phase in order]
    assert firsts == sorted(firsts), phases
    assert "fetching" in phases or "building" in phases
    assert all(event_id for event_id, _ in events), "every event carries an id"
    ready = events[-1][1]
    assert ready["image"].endswith(f":{sha}")
    assert ready["repo_url"] == repo_url
    for key in ("url", "token", "binder_ref_url", "binder_launch_host", "binder_request"):
        assert ready[key], key
    pushing = [data for _, data in events if data["phase"] == "pushing"]
    assert any(data["progress"] for data in pushing), "push progress per layer"
    assert_server_answers(ready)
    name, tag = ready["image"].rsplit(":", 1)
    manifest = requests.head(f"{registry}/v2/{name.split('/', 1)[1]}/manifests/{tag}", timeout=5,
                             headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                                                "application/vnd.oci.image.manifest.v1+json"})
    assert manifest.status_code == 200, "the image is in the registry"
    assert runs(build_counter[0], sha) == 1

    again = collect(build_url(stack, repo_url, sha), timeout=300)
    launched_containers.append(launch_id_of(again))
    # the steps' events; the launcher's own launching lines (a slow server's "Waiting for the server
    # to answer", the word that this bare image has no notebook UI) come between
    again_phases = [data["phase"] for _, data in again
                    if data["phase"] != "launching" or data["message"] == "Launching server...\n"]
    assert again_phases == ["waiting", "built", "launching", "ready"], again
    assert "Found built image" in again[1][1]["message"]
    assert runs(build_counter[0], sha) == 1, "a cached image is never rebuilt"
    assert again[-1][1]["url"] != ready["url"], "each launch gets its own server"
    assert_server_answers(again[-1][1])


def test_twenty_concurrent_requests_share_one_build(
        stack: Stack, git_server: GitServer, build_counter: tuple[Path, list[str]],
        launched_containers: list[str]) -> None:
    """Four of the twenty launch a server each; sixteen ask for the image alone (``build_only``), which
    waits on the same build the same way and starts no server (twenty servers cost minutes of CPU here)."""
    repo_url, sha = git_server.make_repo(quick_dockerfile())
    urls = [build_url(stack, repo_url, "main")] * 4 + [build_url(stack, repo_url, "main", "?build_only=true")] * 16
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda url: collect(url, timeout=600), urls))
    for events in results[:4]:
        launched_containers.append(launch_id_of(events))
    finals = [events[-1][1] for events in results]
    assert [final["phase"] for final in finals] == ["ready"] * 20, [f["message"] for f in finals]
    assert runs(build_counter[0], sha) == 1, "exactly one repo2docker run for 20 requests"
    assert len({final["url"] for final in finals[:4]}) == 4, "each launch has its own server"
    assert {final["imageName"] for final in finals[4:]} == {finals[0]["image"]}, "the image the launches run"
    for events in results:  # everyone saw the build from its first line, not a tail
        assert any(data["phase"] == "building" for _, data in events)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(assert_server_answers, finals[:4]))


def test_reconnect_with_last_event_id_resumes_the_same_launch(
        stack: Stack, git_server: GitServer, build_counter: tuple[Path, list[str]],
        launched_containers: list[str]) -> None:
    repo_url, sha = git_server.make_repo(quick_dockerfile())
    url = build_url(stack, repo_url, "main")
    first: list[tuple[str | None, dict[str, Any]]] = []
    for event_id, data in read_events(url, timeout=300):
        if isinstance(data, dict):
            first.append((event_id, data))
            if data["phase"] == "building":
                break  # the browser drops mid-build
    launch_id = launch_id_of(first)
    launched_containers.append(launch_id)
    rest = collect(url, headers={"Last-Event-ID": first[-1][0] or ""}, timeout=600)
    assert launch_id_of(rest) == launch_id, "the same launch continues"
    seen = [event_id for event_id, _ in first + rest]
    assert len(seen) == len(set(seen)), "no event twice"
    assert rest[-1][1]["phase"] == "ready"
    assert runs(build_counter[0], sha) == 1
    messages = [data.get("message") for _, data in first + rest]
    assert messages.count("Launching server...\n") == 1, "no second launch"


def test_build_only_ends_with_the_image_name(stack: Stack, git_server: GitServer) -> None:
    repo_url, sha = git_server.make_repo(quick_dockerfile())
    events = collect(build_url(stack, repo_url, "main", "?build_only=true"), timeout=600)
    final = events[-1][1]
    assert final["phase"] == "ready" and final["imageName"].endswith(sha), events[-3:]
    assert "launching" not in [data["phase"] for _, data in events]


@pytest.mark.parametrize(("path", "status", "says"), [
    ("/build/nosuch/a/b/HEAD", 404, "unknown provider"),
    ("/build/gh/only-a-user", 400, ""),
    ("/build/git/" + urllib.parse.quote("http://127.0.0.1:9/x.git", safe="") + "/--upload-pack=touch%20x",
     400, "not allowed"),
    ("/build/git/--upload-pack=touch%20x/main", 400, "starts with '-'"),
    ("/build/git/" + urllib.parse.quote("http://127.0.0.1:9/nothing.git", safe="") + "/main",
     502, "could not reach"),
])
def test_bad_input_is_a_failed_event(stack: Stack, path: str, status: int, says: str) -> None:
    events = collect(stack.url + path, timeout=60)
    assert len(events) >= 1
    final = events[-1][1]
    assert final["phase"] == "failed"
    assert final["status_code"] == status
    assert says in final["message"]
    assert "Traceback" not in final["message"]


def test_missing_ref_is_a_failed_event(stack: Stack, git_server: GitServer) -> None:
    repo_url, _ = git_server.make_repo(quick_dockerfile())
    final = collect(build_url(stack, repo_url, "no-such-branch"), timeout=60)[-1][1]
    assert final["phase"] == "failed" and final["status_code"] == 404
    assert "no-such-branch" in final["message"] and "not found" in final["message"]


def test_non_stream_request_gets_a_json_406(stack: Stack) -> None:
    response = requests.get(f"{stack.url}/build/gh/a/b/HEAD", timeout=10)
    assert response.status_code == 406
    assert "text/event-stream" in response.json()["message"]


def test_registry_down_is_a_failed_event(make_stack: StackFactory, git_server: GitServer) -> None:
    down = make_stack("down", {"registry_url": "http://127.0.0.1:9", "image_prefix": "127.0.0.1:9/bindery-test-"},
                      registry=False)
    try:
        repo_url, _ = git_server.make_repo(quick_dockerfile())
        final = collect(build_url(down, repo_url, "main"), timeout=60)[-1][1]
    finally:
        down.stop()
    assert final["phase"] == "failed"
    assert final["status_code"] == 503
    assert "unreachable" in final["message"] and "127.0.0.1:9" in final["message"]


def test_failed_build_ends_with_the_end_of_its_log(stack: Stack, git_server: GitServer) -> None:
    repo_url, _ = git_server.make_repo(f"FROM {JUPYTER_IMAGE}\nRUN echo about-to-fail && false\n")
    events = collect(build_url(stack, repo_url, "main"), timeout=300)
    final = events[-1][1]
    assert final["phase"] == "failed", events[-3:]
    assert "Build failed" in final["message"] and "about-to-fail" in final["message"]
    assert "Traceback" not in final["message"]


def test_lock_of_a_dead_build_expires_and_the_next_request_builds(
        stack: Stack, git_server: GitServer, build_counter: tuple[Path, list[str]],
        launched_containers: list[str]) -> None:
    repo_url, sha = git_server.make_repo(quick_dockerfile())
    image = image_name(stack.settings["image_prefix"], repo_url, sha)
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    # A build that died: it holds the lock, has written nothing, and will never release it.
    assert BuildLock(client, image).acquire("d" * 32, ttl=4)
    events = collect(build_url(stack, repo_url, "main"), timeout=300)
    launched_containers.append(launch_id_of(events))
    messages = "".join(data["message"] for _, data in events)
    assert "following its build" in messages and "stopped; checking again" in messages
    assert events[-1][1]["phase"] == "ready", events[-3:]
    assert runs(build_counter[0], sha) == 1


def test_quota_per_repository_is_a_failed_event(make_stack: StackFactory, git_server: GitServer,
                                                launched_containers: list[str]) -> None:
    small = make_stack("quota", {"quota_per_repo": 1})
    try:
        repo_url, _ = git_server.make_repo(quick_dockerfile())
        first = collect(build_url(small, repo_url, "main"), timeout=300)
        launched_containers.append(launch_id_of(first))
        assert first[-1][1]["phase"] == "ready", first[-4:]
        second = collect(build_url(small, repo_url, "main"), timeout=120)
        launched_containers.append(launch_id_of(second))
    finally:
        small.stop()
    final = second[-1][1]
    assert final["phase"] == "failed" and final["status_code"] == 429
    assert "Too many servers" in final["message"]
