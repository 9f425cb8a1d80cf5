"""Push progress and errors: unit tests of our mapping, fed the engines' real record shapes.

The records below are what Docker (per layer) and Podman 4.3 (whole image) send
on a push, as observed through their Docker APIs.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.config import load_config
from app.errors import RegistryError
from tasks.backends.docker_push import DockerPusher

IMAGE = "127.0.0.1:5055/bindery-x:" + "b" * 40


class _Api:
    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def push(self, repository: str, **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append((repository, kwargs))
        return self.records


class _Client:
    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.api = _Api(records)


def _push(records: list[dict[str, Any]], **settings: Any) -> tuple[list[dict[str, Any]], _Client]:
    client = _Client(records)
    pusher = DockerPusher(client, load_config(settings, environ={}))  # type: ignore[arg-type]
    pusher.interval = 0
    emitted: list[dict[str, Any]] = []
    pusher.push(IMAGE, emitted.append)
    return emitted, client


def test_docker_layer_progress_is_reported_per_layer() -> None:
    emitted, client = _push([
        {"status": "Preparing", "id": "l1"},
        {"status": "Pushing", "id": "l1", "progressDetail": {"current": 5, "total": 10}},
        {"status": "Pushed", "id": "l1", "progressDetail": {}},
    ], registry_username="u", registry_password="p")
    assert emitted[1]["progress"] == {"l1": {"current": 5, "total": 10}}
    assert emitted[-1]["progress"] == {"l1": "Pushed"} and emitted[-1]["message"] == "Pushed image\n"
    repository, kwargs = client.api.calls[0]
    assert repository == "127.0.0.1:5055/bindery-x" and kwargs["tag"] == "b" * 40
    assert kwargs["auth_config"] == {"username": "u", "password": "p"}


def test_podman_status_lines_are_reported_for_the_image() -> None:
    emitted, _ = _push([
        {"status": f"The push refers to repository [{IMAGE}]"},
        {"status": "b" * 40 + ": digest: sha256:c89b size: 742"},
    ])
    assert all(event["phase"] == "pushing" for event in emitted)
    assert "digest" in emitted[-1]["progress"]["b" * 40]


def test_push_error_is_a_registry_error() -> None:
    with pytest.raises(RegistryError, match="Pushing .* failed: connection refused"):
        _push([{"status": "x"}, {"error": "connection refused", "errorDetail": {"message": "x"}}])
