"""Ask the repository host which commit the ref names, and name the image."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from flask import current_app

from app.build_log_store import log_path
from app.errors import ProviderError
from app.extensions import events
from app.metrics import metrics
from app.outages import mark_outage
from providers import get_provider
from providers.base import Resolution, image_name
from providers.http import github_rate_limit_remaining
from providers.policy import quota_for
from tasks import chain
from tasks.single_flight import SingleFlight

log = logging.getLogger(__name__)

#: git ls-remote runs of this process, shared by the launches of one repository and ref that
#: arrive while one runs (git only: the other hosts' APIs answer conditional requests cheaply).
_ls_remotes: SingleFlight[Resolution] = SingleFlight()


@shared_task(name="bindery.resolve_ref")
def resolve_ref(launch: dict[str, Any]) -> None:
    config = current_app.config["BINDERY"]
    repo = get_provider(launch["provider"], launch["spec"], config)
    try:
        if launch["provider"] == "git":
            found = _ls_remotes.run(f"{repo.repo_url()}\0{repo.unresolved_ref}", repo.resolve)
        else:
            found = repo.resolve()
    except ProviderError:  # the host failed or refused us (not a missing ref): /health looks into it
        if launch["provider"] == "gh":
            mark_outage("gh")
        raise
    remaining = github_rate_limit_remaining()
    if remaining is not None:
        metrics().github_rate_limit.set(remaining)
    log.info("resolved %s/%s to %s", launch["provider"], launch["spec"], found.ref)
    if found.notice:  # e.g. a link to a master branch that is now main: tell the user to update it
        events.publish({"phase": "waiting", "message": found.notice.rstrip("\n") + "\n"}, channel=launch["id"])
    chain.resolved({
        **launch,
        "resolved_ref": found.ref,
        "resolved_spec": found.resolved_spec,
        "repo_url": repo.repo_url(),
        "ref_url": found.ref_url,
        "image": repo.prebuilt_image() or image_name(config["image_prefix"], found.build_slug, found.ref),
        "quota": quota_for(launch["provider"], launch["spec"], config),
        "log_path": log_path(launch["provider"], found.resolved_spec),
    })
