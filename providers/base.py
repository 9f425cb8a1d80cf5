"""What every repository provider gives the pipeline, and the checks they share.

A provider is built from its spec (the part of the URL after the prefix) and
the validated config.  Parsing happens in ``__init__`` and raises
:class:`~app.errors.SpecError` with a message that says what to fix, so the
web layer can refuse a bad spec before anything is queued.  Resolving the ref
talks to the network and happens only in the pipeline.
"""

from __future__ import annotations

import hashlib
import re
import string
import urllib.parse
from typing import Any, ClassVar

import escapism

from app.errors import SpecError

_SAFE_SLUG_CHARS = set(string.ascii_letters + string.digits)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
SHA1 = re.compile(r"\A[0-9a-f]{40}\Z")


def check_safe(value: str, what: str) -> str:
    """Refuse values that could be read as an option or split a command line.

    Everything a user controls that may reach git or repo2docker passes here.
    """
    if not value:
        raise SpecError(f"{what} is empty")
    if value.startswith("-"):
        raise SpecError(f"{what} {value[:40]!r} starts with '-', which is not allowed")
    if _CONTROL.search(value):
        raise SpecError(f"{what} contains whitespace or control characters, which are not allowed")
    return value


def redact_url(url: str) -> str:
    """A URL with any user:password removed, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def safe_build_slug(build_slug: str, limit: int, hash_length: int = 6) -> str:
    """BinderHub's escaping of a build slug: DNS/image safe, unique by a hash suffix."""
    digest = hashlib.sha256(build_slug.encode("utf-8")).hexdigest()
    escaped = escapism.escape(build_slug, safe=_SAFE_SLUG_CHARS, escape_char="-")
    return f"{escaped[: limit - hash_length - 1]}-{digest[:hash_length]}".lower()


def image_name(prefix: str, build_slug: str, resolved_ref: str) -> str:
    """``{prefix}{escaped slug}-{hash}:{ref}``, lowercased, as BinderHub names images."""
    slug = safe_build_slug(build_slug, limit=255 - len(prefix))
    return f"{prefix}{slug}:{resolved_ref}".replace("_", "-").lower()


class RepoProvider:
    """Base of all providers.  Subclasses parse in ``__init__`` and resolve in ``resolve_ref``."""

    #: URL prefix, e.g. ``gh``
    prefix: ClassVar[str] = ""
    #: Display name for pages and ``/api/repoproviders``
    name: ClassVar[str] = ""

    def __init__(self, spec: str, config: dict[str, Any]) -> None:
        self.spec = spec
        self.config = config
        self.unresolved_ref = ""

    # --- parsed facts (no network) -------------------------------------------------------
    def repo_url(self) -> str:
        """The URL repo2docker fetches (also shown to users; never carries credentials)."""
        raise NotImplementedError

    def build_slug(self) -> str:
        """What identifies the repository for image names (BinderHub's ``get_build_slug``)."""
        raise NotImplementedError

    def ref_url(self, resolved_ref: str) -> str:
        """A human URL for the resolved commit (``binder_ref_url``)."""
        return self.repo_url()

    # --- network -------------------------------------------------------------------------
    def resolve_ref(self) -> str:
        """The immutable ref (commit sha or equivalent); raises NotFound / ProviderError."""
        raise NotImplementedError

    def resolved_spec(self, resolved_ref: str) -> str:
        """The spec with the ref replaced by the resolved one (for links that do not move)."""
        raise NotImplementedError

    def repo2docker_env(self) -> dict[str, str]:
        """Extra environment for repo2docker (credentials travel here, never in the URL)."""
        return {}
