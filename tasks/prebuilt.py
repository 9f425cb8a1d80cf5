"""Prebuilt images (the ``image`` provider): launch what is in the registry, never build.

The image names its own registry.  When that is the configured registry, the
step's store answers (with its credentials); another registry is asked
anonymously over its v2 API (plain HTTP only on loopback).  A missing image is
a 404: there is nothing to build it from.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from app.errors import NotFound
from tasks.backends.registry import RegistryClient, split_image

_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def registry_for(config: dict[str, Any], image: str, store: Any) -> Any:
    """The store that can say whether ``image`` exists."""
    host, _, _ = split_image(image)
    configured = config.get("registry_url")
    if not configured or (host and host == urllib.parse.urlsplit(configured).netloc):
        return store
    if not host:
        return RegistryClient("https://registry-1.docker.io", timeout=float(config["registry_timeout"]))
    scheme = "http" if host.rsplit(":", 1)[0] in _LOOPBACK else "https"
    return RegistryClient(f"{scheme}://{host}", timeout=float(config["registry_timeout"]))


def require_prebuilt(config: dict[str, Any], image: str, store: Any) -> None:
    """Raise NotFound (404) unless the registry has ``image``."""
    if not registry_for(config, image, store).exists(image):
        raise NotFound(f"image {image} was not found in its registry; the image provider launches "
                       "prebuilt images only and never builds")
