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
from providers.base import image_name
from providers.github import github_rate_limit_remaining
from providers.policy import quota_for
from tasks import chain
from tasks.single_flight import SingleFlight

log = logging.getLogger(__name__)

#: git ls-remote runs of this process, shared by the launches of one repository and ref that
#: arrive while one runs (git only: other providers keep what they resolved on the provider).
_ls_remotes: SingleFlight[str] = SingleFlight()


@shared_task(name="bindery.resolve_ref")
def resolve_ref(launch: dict[str, Any]) -> None:
    config = current_app.config["BINDERY"]
    repo = get_provider(launch["provider"], launch["spec"], config)
    try:
        if launch["provider"] == "git":
            ref = _ls_remotes.run(f"{repo.repo_url()}\0{repo.unresolved_ref}", repo.resolve_ref)
        else:
            ref = repo.resolve_ref()
    except ProviderError:  # the host failed or refused us (not a missing ref): /health looks into it
        if launch["provider"] == "gh":
            mark_outage("gh")
        raise
    remaining = github_rate_limit_remaining()
    if remaining is not None:
        metrics().github_rate_limit.set(remaining)
    log.info("resolved %s/%s to %s", launch["provider"], launch["spec"], ref)
    notice = getattr(repo, "notice", None)
    if notice:  # e.g. a link to a master branch that is now main: tell the user to update it
        events.publish({"phase": "waiting", "message": notice.rstrip("\n") + "\n"}, channel=launch["id"])
    resolved_spec = repo.resolved_spec(ref)
    chain.resolved({
        **launch,
        "resolved_spec": resolved_spec,
        "resolved_ref": ref,
        "repo_url": repo.repo_url(),
        "ref_url": repo.ref_url(ref),
        "image": repo.prebuilt_image() or image_name(config["image_prefix"], repo.build_slug(), ref),
        "quota": quota_for(launch["provider"], launch["spec"], config),
        "log_path": log_path(launch["provider"], resolved_spec),
    })
