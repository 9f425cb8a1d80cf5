"""What a push webhook says, read from GitHub's and GitLab's payloads into one shape.

Only the fields Bindery acts on are read.  A payload without them, or with them of the
wrong type, is a 400 naming the field: the sender's mistake, never a 500.  Nothing here
trusts the payload: the signature is checked before any of it is acted on (app/hooks.py),
and the repository it names still goes through the provider's parse and the operator's
rules like a click's link.
"""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.parse
from typing import Any

from app.config import normalise_repository
from app.errors import SpecError

ZERO_SHA = "0" * 40
_SHA = re.compile(r"\A[0-9a-f]{40}\Z")


class MalformedPayload(SpecError):
    """The body is not a push payload Bindery can read (400)."""


@dataclasses.dataclass(frozen=True)
class Push:
    """One push to one ref, as both hosts describe it."""

    host: str  #: ``github`` or ``gitlab``: who sent it (how the repository maps to a provider)
    repository: str  #: the repository's web URL, normalised: webhook_repositories' key, the rate limit's
    clone_url: str
    full_name: str  #: ``owner/repo`` (GitHub), ``namespace/project`` (GitLab)
    ref: str  #: ``refs/heads/<branch>`` or ``refs/tags/<tag>``
    after: str  #: the commit the ref points to now (40 zeros: the ref was deleted)
    default_branch: str
    deleted: bool = False

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None

    @property
    def tag(self) -> str | None:
        return self.ref.removeprefix("refs/tags/") if self.ref.startswith("refs/tags/") else None

    @property
    def host_name(self) -> str:
        return urllib.parse.urlsplit(self.repository).netloc


def load_body(body: bytes, content_type: str) -> dict[str, Any]:
    """The payload: JSON, or GitHub's form encoding (``payload=<JSON>``) when the hook was set up so."""
    try:
        if content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded":
            form = urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=True)
            text = form["payload"][0]
        else:
            text = body.decode("utf-8")
        payload = json.loads(text)
    except (ValueError, KeyError, IndexError):
        raise MalformedPayload("The webhook's body is not a JSON payload (set the webhook's content type to "
                               "application/json).") from None
    if not isinstance(payload, dict):
        raise MalformedPayload("The webhook's payload is not a JSON object.")
    return payload


def _text(payload: dict[str, Any], *path: str, required: bool = True) -> str:
    value: Any = payload
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value or len(value) > 2000:
        raise MalformedPayload(f"The push payload has no usable {'.'.join(path)!r} field.")
    return value


def repository_of(payload: dict[str, Any], host: str) -> str | None:
    """The repository a delivery is about (to find its secret), or None (e.g. an organisation's ping)."""
    url = _text(payload, *(("repository", "html_url") if host == "github" else ("project", "web_url")),
                required=False)
    return normalise_repository(url) if url else None


def _commit(value: str) -> str:
    if not _SHA.match(value):
        raise MalformedPayload("The push payload's commit is not a 40-character hexadecimal sha.")
    return value


def github_push(payload: dict[str, Any]) -> Push:
    """GitHub's ``push`` event (https://docs.github.com/webhooks/webhook-events-and-payloads#push)."""
    after = _commit(_text(payload, "after"))
    return Push(host="github", repository=normalise_repository(_text(payload, "repository", "html_url")),
                clone_url=_text(payload, "repository", "clone_url"),
                full_name=_text(payload, "repository", "full_name"), ref=_text(payload, "ref"), after=after,
                default_branch=_text(payload, "repository", "default_branch"),
                deleted=payload.get("deleted") is True or after == ZERO_SHA)


def gitlab_push(payload: dict[str, Any]) -> Push:
    """GitLab's ``Push Hook`` and ``Tag Push Hook`` (object_kind ``push``, ``tag_push``)."""
    if payload.get("object_kind") not in ("push", "tag_push"):
        raise MalformedPayload("The payload's object_kind is not push or tag_push.")
    after = _commit(_text(payload, "after"))
    return Push(host="gitlab", repository=normalise_repository(_text(payload, "project", "web_url")),
                clone_url=_text(payload, "project", "git_http_url"),
                full_name=_text(payload, "project", "path_with_namespace"), ref=_text(payload, "ref"), after=after,
                default_branch=_text(payload, "project", "default_branch"),
                deleted=after == ZERO_SHA)
