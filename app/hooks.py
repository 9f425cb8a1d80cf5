"""Build on push: signed webhooks and API calls that build a commit before anyone clicks.

The rules, in the order they are applied (docs/build-on-push.md explains them to operators):

1. ``POST /hooks/github`` and ``POST /hooks/gitlab`` exist only when a webhook secret is
   configured (``webhook_secret``, or a repository's own in ``webhook_repositories``); else 404.
   ``POST /api/prebuild/<provider>/<spec>`` exists only with ``prebuild_tokens``.
2. A body over ``webhook_max_body_bytes`` is refused (413) before it is read.
3. Who sent it: GitHub's ``X-Hub-Signature-256`` must be the HMAC-SHA256 of the raw body
   with the repository's secret, GitLab's ``X-Gitlab-Token`` must be that secret, an API call's
   ``Authorization: Bearer`` must be one of ``prebuild_tokens``; all compared in constant time.
   Missing or wrong: 401.  A repository not listed when ``webhook_repositories`` lists some:
   403.  (The payload must be read to know whose secret to use, so an unreadable one is 400.)
4. Events: GitHub's ``ping`` answers 200; other events, pushes to branches other than the
   default (and tags, unless ``webhook_tags``), and deleted refs are answered 200 and build
   nothing.  A push's payload missing what Bindery needs is 400.
5. The commit becomes a link as a click would name it (``gh/<owner>/<repo>/<sha>`` on the
   configured GitHub, ``gl/...`` on the configured GitLab, else ``git/<clone URL>/<sha>``)
   and goes through the provider's parse and ``banned_specs``/``allowed_specs`` (400/403).  The
   repository built must be the one the payload names (whose secret signed it): else 400.
6. A delivery id seen within ``webhook_delivery_ttl`` is answered 200 and builds nothing
   (``SET NX``); more than ``webhook_rate_limit`` pushes of one repository per period: 429
   with ``Retry-After`` (the delivery is then forgotten, so a redelivery later may build).
7. Otherwise a ``build_only`` launch of the commit is queued exactly as a click queues one
   (app/launches.py: the same chain, build lock and registry check, so a click of the same
   commit shares the build), and the answer is 202 with the launch id, its event stream and
   the build log's URL.  When it is built, warm pools of its links follow it
   (tasks/backends/warm_pool.py ``note_build``).

Secrets and signatures are never logged, echoed or put in an answer.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import urllib.parse
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from app import keys, launches, rate_limit, request_limits
from app.build_log_store import log_path
from app.config import normalise_repository
from app.errors import Banned, BinderyError
from app.extensions import redis_client
from app.metrics import metrics
from app.push_payloads import MalformedPayload, Push, github_push, gitlab_push, load_body, repository_of
from app.rawpath import raw_spec
from providers import get_provider

log = logging.getLogger(__name__)

bp = Blueprint("hooks", __name__)


class Unauthorized(BinderyError):
    status_code = 401


class TooLarge(BinderyError):
    status_code = 413


class Ignored(Exception):
    """Nothing to build, and nothing wrong: answered 200 with the reason."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _settings() -> dict[str, Any]:
    return current_app.config["BINDERY"]  # type: ignore[no-any-return]


def hooks_enabled(settings: dict[str, Any]) -> bool:
    return bool(settings["webhook_secret"] or any(settings["webhook_repositories"].values()))


# --- the door: size, who sent it ------------------------------------------------------------------

def _body(settings: dict[str, Any]) -> bytes:
    """The raw body (what the signature covers), refused with 413 beyond the limit without reading it."""
    limit = settings["webhook_max_body_bytes"]
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"The request body is {request.content_length} bytes; this Bindery accepts at most "
                       f"{limit} for a webhook.")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise TooLarge(f"The request body is over {limit} bytes, the most this Bindery accepts for a webhook.")
    return body


def secret_for(settings: dict[str, Any], repository: str | None) -> str:
    """The secret a delivery about ``repository`` must be signed with; 403 for a repository not opted in."""
    listed: dict[str, str | None] = settings["webhook_repositories"]
    if listed and repository is not None:
        if repository not in listed:
            raise Banned(f"{repository} is not among the repositories this Bindery builds on push; ask its "
                         "operators to add it to webhook_repositories.")
        secret = listed[repository] or settings["webhook_secret"]
    else:
        secret = settings["webhook_secret"]
    if not secret:
        raise Banned("This Bindery has no webhook secret for this repository; ask its operators for one.")
    return str(secret)


def github_signature(secret: str, body: bytes) -> str:
    """What GitHub sends in X-Hub-Signature-256 for ``body`` signed with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _signature_header(name: str, where: str) -> str:
    """The header carrying the signature or token; 401 when it is missing (before the body is parsed)."""
    sent = request.headers.get(name, "")
    if not sent:
        raise Unauthorized(f"The webhook has no {name} header: set its secret in the {where} webhook settings to "
                           "the one this Bindery's operators gave you.")
    return sent


def _check_github(secret: str, body: bytes) -> None:
    sent = _signature_header("X-Hub-Signature-256", "repository's")
    if not hmac.compare_digest(sent.encode(), github_signature(secret, body).encode()):
        raise Unauthorized("The webhook's signature (X-Hub-Signature-256) does not match: its secret is not the "
                           "one this Bindery has for the repository.")


def _check_gitlab(secret: str) -> None:
    sent = _signature_header("X-Gitlab-Token", "project's")
    if not hmac.compare_digest(sent.encode(), secret.encode()):
        raise Unauthorized("The webhook's secret token (X-Gitlab-Token) is not the one this Bindery has for the "
                           "project.")


def token_name(settings: dict[str, Any]) -> str:
    """The name of the prebuild token the request carries; 401 without a valid one."""
    header = request.headers.get("Authorization", "")
    scheme, _, sent = header.partition(" ")
    if scheme.lower() not in ("bearer", "token") or not sent.strip():
        raise Unauthorized("An API token is needed: send 'Authorization: Bearer <token>' with a token from this "
                           "Bindery's operators.")
    found = None
    for name, token in settings["prebuild_tokens"].items():  # every one compared: the time says nothing
        if hmac.compare_digest(sent.strip().encode(), token.encode()):
            found = name
    if found is None:
        raise Unauthorized("The API token is not valid on this Bindery.")
    return found


# --- from a push to a launch ------------------------------------------------------------------------

def _ref_name(push: Push, settings: dict[str, Any]) -> str:
    """The branch or tag a link names with this push; Ignored when the push builds nothing."""
    if push.deleted:
        raise Ignored(f"{push.ref} was deleted: nothing to build.")
    if push.tag is not None:
        if not settings["webhook_tags"]:
            raise Ignored(f"{push.ref} is a tag; this Bindery builds tags on push only with webhook_tags.")
        return push.tag
    if push.branch is None:
        raise Ignored(f"{push.ref} is neither a branch nor a tag: nothing to build.")
    if push.branch != push.default_branch:
        raise Ignored(f"{push.ref} is not the default branch ({push.default_branch}): only the default branch "
                      "builds on push.")
    return push.branch


def _host(url: str) -> str:
    return urllib.parse.urlsplit(str(url)).netloc.lower()


def link_specs(push: Push, name: str, settings: dict[str, Any]) -> tuple[str, str, list[str]]:
    """(provider, the commit's spec, the links the push updates): what a click of the commit would name."""
    quoted = urllib.parse.quote(name, safe="")
    # What is built must be the repository whose secret signed the push (webhook_repositories' key).
    if push.host == "github" and push.host_name == _host(settings["github_url"]):
        provider, base, names = "gh", push.full_name, [name]  # (the gh provider reads its ref unescaped)
        built = f"{str(settings['github_url']).rstrip('/')}/{push.full_name}"
    elif push.host == "gitlab" and push.host_name == _host(settings["gitlab_url"]):
        provider, base, names = "gl", urllib.parse.quote(push.full_name, safe=""), [quoted]
        built = f"{str(settings['gitlab_url']).rstrip('/')}/{push.full_name}"
    else:  # any other host is a git URL
        provider, base, names = "git", urllib.parse.quote(push.clone_url, safe=""), [quoted]
        built = push.clone_url
    if normalise_repository(built) != push.repository:
        raise MalformedPayload("The push payload names two repositories: the one it builds is not the one that "
                               "signed it.")
    if push.branch is not None:
        names.append("HEAD")  # (only the default branch gets here)
    return provider, f"{base}/{push.after}", [f"{provider}/{base}/{ref}" for ref in names]


def _remember_delivery(source: str, delivery: str) -> str:
    """Claim a delivery (``SET NX``): its key when it is new, Ignored when it was seen before."""
    key = keys.HOOK_DELIVERY(source, keys.digest(delivery))
    if not redis_client.client.set(key, "1", nx=True, ex=_settings()["webhook_delivery_ttl"]):
        raise Ignored("This delivery was received before; it builds nothing again.")
    return key


def _count_push(repository: str) -> None:
    """One push of ``repository`` against webhook_rate_limit; 429 saying when to retry when over it."""
    settings = _settings()
    if not settings["webhook_rate_limit"]:
        return
    window = rate_limit.hit(redis_client.client, f"push-{keys.digest(repository)}", settings["webhook_rate_limit"],
                            settings["webhook_rate_limit_period"])
    if not window.allowed:
        raise rate_limit.refusal(window, what=f"pushes of {repository[:200]}", whose="one repository")


def queue(provider: str, spec: str, *, trigger: str, repository: str, pool_specs: list[str],
          delivery: tuple[str, str] | None, commit: str | None) -> ResponseReturnValue:
    """Check the link like a click's, count it, and queue its build-only launch: the 202 answer."""
    settings = _settings()
    request_limits.check_spec(spec)
    repo = get_provider(provider, spec, settings)  # 400 for a bad spec, 403 banned or not allowed
    for link in pool_specs:
        link_provider, _, link_spec = link.partition("/")
        get_provider(link_provider, link_spec, settings)
    claimed = _remember_delivery(*delivery) if delivery else None
    try:
        _count_push(repository)
        launch_id = launches.start(provider, spec, build_only=True, origin=request.host_url,
                                   request_origin=f"{trigger}:{repository}"[:200], trigger=trigger,
                                   pool_specs=pool_specs)
    except BaseException:
        if claimed:
            redis_client.client.delete(claimed)  # refused (or failed): a redelivery may try again
        raise
    host = request.host_url
    body = {"message": f"Queued a build of {provider}/{spec}.", "launch_id": launch_id,
            "events_url": f"{host}build/{provider}/{spec}?lastEventId={launch_id}_0-0",
            "log_url": f"{host}{log_path(provider, repo.resolved_spec(commit)).lstrip('/')}" if commit else None}
    log.info("%s of %s queued launch %s (%s/%s)", trigger, repository, launch_id, provider, spec)
    return jsonify(body), 202


def _push(push: Push, source: str, delivery: str | None) -> ResponseReturnValue:
    settings = _settings()
    name = _ref_name(push, settings)
    provider, spec, pool_specs = link_specs(push, name, settings)
    return queue(provider, spec, trigger="push", repository=push.repository, pool_specs=pool_specs,
                 delivery=(source, delivery or f"{push.repository} {push.ref} {push.after}"), commit=push.after)


def _answer(trigger: str, view: Any, *args: Any) -> ResponseReturnValue:
    """Run a view: refusals in the one error format (with Retry-After on 429), Ignored as 200; counted."""
    figures = metrics().hook_requests
    try:
        answer = view(*args)
    except Ignored as ignored:
        figures.labels(trigger=trigger, result="ignored").inc()
        return jsonify({"message": ignored.message, "ignored": True}), 200
    except BinderyError as error:
        figures.labels(trigger=trigger, result="refused").inc()
        log.info("%s refused (%d): %s", trigger, error.status_code, error.message)
        response: Response = jsonify(error.to_dict())
        response.status_code = error.status_code
        if "retry_after" in error.details:
            response.headers["Retry-After"] = str(error.details["retry_after"])
        return response
    figures.labels(trigger=trigger, result="queued" if answer[1] == 202 else "ignored").inc()  # type: ignore[index]
    return answer


def _require_hooks() -> dict[str, Any]:
    settings = _settings()
    if not hooks_enabled(settings):
        raise BinderyError("Build on push is not enabled on this Bindery (no webhook secret is set).", 404)
    return settings


def _github() -> ResponseReturnValue:
    settings = _require_hooks()
    body = _body(settings)
    _signature_header("X-Hub-Signature-256", "repository's")
    payload = load_body(body, request.content_type or "")
    _check_github(secret_for(settings, repository_of(payload, "github")), body)
    event = request.headers.get("X-GitHub-Event", "")
    if event == "ping":
        return jsonify({"message": "pong: pushes to the default branch will be built."}), 200
    if event != "push":
        raise Ignored(f"{event or 'this'} event builds nothing; only push events do.")
    return _push(github_push(payload), "github", request.headers.get("X-GitHub-Delivery"))


def _gitlab() -> ResponseReturnValue:
    settings = _require_hooks()
    body = _body(settings)
    _signature_header("X-Gitlab-Token", "project's")
    payload = load_body(body, request.content_type or "")
    _check_gitlab(secret_for(settings, repository_of(payload, "gitlab")))
    event = request.headers.get("X-Gitlab-Event", "")
    if event not in ("Push Hook", "Tag Push Hook"):
        raise Ignored(f"{event or 'this'} event builds nothing; only push and tag push events do.")
    delivery = request.headers.get("Idempotency-Key") or request.headers.get("X-Gitlab-Event-UUID")
    return _push(gitlab_push(payload), "gitlab", delivery)


def _prebuild(provider: str, spec: str) -> ResponseReturnValue:
    settings = _settings()
    if not settings["prebuild_tokens"]:
        raise BinderyError("The prebuild API is not enabled on this Bindery (no prebuild_tokens are set).", 404)
    name = token_name(settings)
    spec = raw_spec(f"/api/prebuild/{provider}/", spec)
    request_limits.check_spec(spec)
    repo = get_provider(provider, spec, settings)
    ref = getattr(repo, "unresolved_ref", "") or ""
    commit = ref if len(ref) == 40 and all(c in "0123456789abcdef" for c in ref) else None
    log.info("prebuild of %s/%s asked with the token named %s", provider, spec, name)
    return queue(provider, spec, trigger="api", repository=normalise_repository(repo.repo_url()),
                 pool_specs=[f"{provider}/{spec}"], delivery=None, commit=commit)


@bp.post("/hooks/github")
def github() -> ResponseReturnValue:
    return _answer("push", _github)


@bp.post("/hooks/gitlab")
def gitlab() -> ResponseReturnValue:
    return _answer("push", _gitlab)


@bp.post("/api/prebuild/<provider>/<path:spec>")
def prebuild(provider: str, spec: str) -> ResponseReturnValue:
    return _answer("api", _prebuild, provider, spec)
