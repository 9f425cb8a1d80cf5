"""Last good image (binder#51): when a commit fails to build, launch the repository's
last image that did build, if the operator allows it, and say so plainly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app

from app import keys
from app.extensions import events, redis_client
from tasks import backends


def _key(repo_url: str) -> str:
    return keys.LAST_GOOD(keys.digest(repo_url))


def remember(launch: dict[str, Any]) -> None:
    """Called when an image is stored: it becomes the repository's last good image."""
    redis_client.client.hset(_key(launch["repo_url"]), mapping={
        "image": launch["image"], "resolved_ref": launch["resolved_ref"], "ref_url": launch["ref_url"] or "",
    })


def fallback(launch: dict[str, Any]) -> dict[str, Any] | None:
    """The launch redirected to the last good image, or None when not allowed or not there."""
    config = current_app.config["BINDERY"]
    if not config["launch_last_good_image"] or not launch.get("repo_url"):
        return None
    good = redis_client.client.hgetall(_key(launch["repo_url"]))
    if not good or good["image"] == launch["image"] or not backends.image_store(config).exists(good["image"]):
        return None
    return {**launch, "image": good["image"], "resolved_ref": good["resolved_ref"],
            "ref_url": good["ref_url"] or launch["ref_url"], "build_id": None}


def offer(launch: dict[str, Any], run: Callable[[dict[str, Any]], Any]) -> bool:
    """Launch the last good image instead of failing, with a notice; False when there is none."""
    previous = fallback(launch)
    if previous is None:
        return False
    events.publish({"phase": "launching", "message": (
        f"The build of commit {launch['resolved_ref'][:12]} failed, so you get the last version that "
        f"built: commit {previous['resolved_ref'][:12]}. The build log explains the failure.\n"),
        "fallback_ref": previous["resolved_ref"]}, channel=launch["id"])
    run(previous)
    return True
