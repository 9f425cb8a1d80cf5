"""Push backend: the docker SDK streams the push; progress becomes ``pushing`` events."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import docker
import requests

from app.errors import RegistryError
from tasks.backends.registry import split_image

Emit = Callable[[dict[str, Any]], None]


class DockerPusher:
    #: Seconds between progress events; a push reports many times a second per layer.
    interval = 0.5

    def __init__(self, client: docker.DockerClient, config: dict[str, Any]) -> None:
        self.client = client
        self.config = config

    def _auth(self) -> dict[str, str] | None:
        if self.config["registry_username"]:
            return {"username": self.config["registry_username"],
                    "password": self.config["registry_password"]}
        return None

    def push(self, image: str, emit: Emit) -> None:
        host, path, tag = split_image(image)
        repository = f"{host}/{path}" if host else path
        progress: dict[str, Any] = {}
        last = 0.0
        try:
            for record in self.client.api.push(repository, tag=tag, stream=True, decode=True,
                                               auth_config=self._auth()):
                if "error" in record:
                    raise RegistryError(f"Pushing {image} failed: {record['error']}")
                # Docker reports per layer; Podman reports the whole image in a status line.
                layer = record.get("id") or tag
                detail = record.get("progressDetail") or {}
                progress[layer] = ({"current": detail["current"], "total": detail["total"]}
                                   if detail.get("total") else record.get("status", ""))
                now = time.monotonic()
                if now - last >= self.interval:
                    last = now
                    emit({"phase": "pushing", "message": "Pushing image\n", "progress": dict(progress)})
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise RegistryError(f"Pushing {image} failed: the engine or registry did not answer "
                                f"({type(exc).__name__}).") from exc
        emit({"phase": "pushing", "message": "Pushed image\n", "progress": dict(progress)})
