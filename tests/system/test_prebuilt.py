"""The image provider end to end, for real: a prebuilt image in the loopback registry is launched, never built.

Real: gunicorn, Celery workers, embedded Redis, the reference Registry v2 on
127.0.0.1:5055, the Podman engine, and a Jupyter server started from the image.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import docker
import pytest
import requests

from tests.conftest import JUPYTER_IMAGE, REGISTRY_PORT
from tests.stack import Stack, StackFactory, collect

pytestmark = [pytest.mark.integration, pytest.mark.engine]

REPOSITORY = f"127.0.0.1:{REGISTRY_PORT}/prebuilt/jupyter"


@pytest.fixture(scope="module")
def pushed_image(engine: docker.DockerClient, registry: str) -> Iterator[str]:
    """localhost/bindery-jupyter:bookworm pushed to the loopback registry under a fresh tag."""
    tag = f"t{uuid.uuid4().hex[:12]}"
    image = engine.images.get(JUPYTER_IMAGE)
    image.tag(REPOSITORY, tag)
    try:
        for line in engine.images.push(REPOSITORY, tag=tag, stream=True, decode=True):
            assert "error" not in line, line
        yield f"{REPOSITORY}:{tag}"
    finally:
        engine.images.remove(f"{REPOSITORY}:{tag}", noprune=True)


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory) -> Stack:
    return make_module_stack("prebuilt", {
        "enabled_providers": ["gh", "git", "image"],
        "allowed_specs": {"image": [f"^127\\.0\\.0\\.1:{REGISTRY_PORT}/prebuilt/"]},
        "launch_timeout": 120,
        "keepalive_interval": 1,
    })


def launch_id_of(events: list[tuple[str | None, dict]]) -> str:
    ids = {event_id.split("_")[0] for event_id, _ in events if event_id}
    assert len(ids) == 1, ids
    return ids.pop()


def test_prebuilt_image_launches_without_a_build(stack: Stack, pushed_image: str,
                                                 launched_containers: list[str]) -> None:
    events = collect(f"{stack.url}/build/image/{pushed_image}", timeout=300)
    launched_containers.append(launch_id_of(events))
    # the steps' events; the launcher's own launching lines (a slow server's "Waiting for the server
    # to answer", the word that this bare image has no notebook UI) come between
    phases = [data["phase"] for _, data in events
              if data["phase"] != "launching" or data["message"] == "Launching server...\n"]
    assert phases == ["waiting", "built", "launching", "ready"], events
    assert any(data.get("no_interface") for _, data in events), events
    ready = events[-1][1]
    assert ready["image"] == pushed_image
    response = requests.get(f"{ready['url']}api", params={"token": ready["token"]}, timeout=10)
    assert response.status_code == 200, response.text


def test_absent_image_fails_404(stack: Stack, pushed_image: str) -> None:
    missing = pushed_image.rsplit(":", 1)[0] + ":no-such-tag"
    events = collect(f"{stack.url}/build/image/{missing}", timeout=120)
    final = events[-1][1]
    assert final["phase"] == "failed" and final["status_code"] == 404, final
    assert "not found" in final["message"] and "never builds" in final["message"]
    assert not any(data["phase"] == "building" for _, data in events)


@pytest.mark.parametrize("spec, status", [
    ("quay.io/jupyter/base-notebook:2024-07-08", 403),  # not in allowed_specs
    (f"127.0.0.1:{REGISTRY_PORT}/prebuilt/jupyter", 400),  # no tag
], ids=["not-allowed", "no-tag"])  # the same on every xdist worker (REGISTRY_PORT is not)
def test_refused_before_queueing(stack: Stack, spec: str, status: int) -> None:
    events = collect(f"{stack.url}/build/image/{spec}", timeout=30)
    assert [data["phase"] for _, data in events] == ["failed"]
    assert events[0][1]["status_code"] == status


def test_off_by_default(redis_server) -> None:
    from app import create_app

    app = create_app({"redis_url": redis_server.url, "launcher": "bench"})
    response = app.test_client().get("/build/image/quay.io/x:1", headers={"Accept": "text/event-stream"})
    assert b'"status_code": 404' in response.data
