"""Step 1: ask the repository host which commit the ref names, and name the image."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from flask import current_app

from providers import get_provider
from providers.base import image_name


@shared_task(name="bindery.resolve_ref")
def resolve_ref(launch: dict[str, Any]) -> None:
    from tasks.chain import proceed
    from tasks.check_registry import check_registry

    config = current_app.config["BINDERY"]
    repo = get_provider(launch["provider"], launch["spec"], config)
    ref = repo.resolve_ref()
    proceed(check_registry, {
        **launch,
        "resolved_ref": ref,
        "repo_url": repo.repo_url(),
        "ref_url": repo.ref_url(ref),
        "image": image_name(config["image_prefix"], repo.build_slug(), ref),
    })
