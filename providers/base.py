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
import unicodedata
import urllib.parse
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import escapism
import requests

from app.errors import SpecError
from providers.http import session as shared_session

_SAFE_SLUG_CHARS = set(string.ascii_letters + string.digits)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
SHA1 = re.compile(r"\A[0-9a-f]{40}\Z")
_NOT_TAG = re.compile(r"[^A-Za-z0-9_.-]")
_USERINFO = re.compile(r"(://)[^/\s@]*@")
_GITHUB_USER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")


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


def check_text(value: str, what: str) -> str:
    """``check_safe`` plus no Unicode separators, format or unencodable characters.

    Lone surrogates would fail later when encoded for git or a URL, and invisible
    or line-breaking characters make refs that look like other refs in logs.
    """
    check_safe(value, what)
    if any(unicodedata.category(ch)[0] in "CZ" for ch in value):
        raise SpecError(f"{what} contains whitespace, invisible or invalid characters, which are not allowed")
    return value


def check_ref(ref: str) -> str:
    """A ref usable in an API path: safe for a command line and not a dot segment."""
    check_text(ref, "ref")
    if ref in (".", ".."):
        raise SpecError(f"ref {ref!r} is not a valid git ref")
    return ref


def check_github_user(user: str) -> str:
    """A GitHub user or organisation name (gh and gist specs)."""
    if not _GITHUB_USER.fullmatch(user):
        raise SpecError(f"GitHub user {user[:40]!r} may only contain letters, digits and '-' "
                        "(not first), at most 39 characters")
    return user


def redact_text(text: str) -> str:
    """Drop any ``user:password@`` from URLs inside free text (e.g. git's stderr)."""
    return _USERINFO.sub(r"\1", text)


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
    tag = _NOT_TAG.sub("-", resolved_ref)[:128]  # e.g. the colons of a Software Heritage id
    return f"{prefix}{slug}:{tag}".replace("_", "-").lower()


def js_regex_escape(text: str) -> str:
    """Escape ``text`` for a regex that must mean the same in Python and JavaScript.

    ``re.escape`` also escapes ``-``, ``~``, ``#`` ..., which a JavaScript regex with the
    ``u`` flag rejects; only the characters special in both are escaped here.
    """
    return re.sub(r"([\\^$.|?*+()\[\]{}/])", r"\\\1", text)


@dataclass(frozen=True)
class Resolution:
    """What resolving a spec found, returned rather than kept: a parsed provider never changes, so
    one parse can serve every launch of the spec (see :func:`providers.get_provider`)."""

    #: The immutable ref (commit sha, record version, ...)
    ref: str
    #: What the image is named after (archives name it after the resolved record)
    build_slug: str
    #: The spec pinned to ``ref``, for links that do not move and the build log's path
    resolved_spec: str
    #: A human URL of this version (``binder_ref_url``)
    ref_url: str
    #: Something to tell the user (e.g. "update your link"), or None
    notice: str | None = None


class RepoProvider:
    """Base of all providers.  Subclasses parse in ``__init__`` and resolve in :meth:`resolve`.

    After ``__init__`` a provider never changes (resolving returns what it found), so parsed
    providers are cached and copied (:meth:`copy`).

    The class attributes below are the provider's display config, served as is by
    ``GET /api/repoproviders`` (the landing page builds its form from them).
    """

    #: URL prefix, e.g. ``gh``
    prefix: ClassVar[str] = ""
    #: Display name for pages and ``/api/repoproviders``
    name: ClassVar[str] = ""
    #: The spec after the prefix, as a pattern for people
    spec_pattern: ClassVar[str] = ""
    #: A JavaScript-compatible regex that recognises this provider's web URLs; ``{host}``
    #: is replaced by the configured host (see :meth:`display_host`)
    url_regex: ClassVar[str] = ""
    repo_label: ClassVar[str] = ""
    repo_placeholder: ClassVar[str] = ""
    #: Whether the spec carries a ref the user may choose, its default and its label
    ref_enabled: ClassVar[bool] = True
    ref_default: ClassVar[str] = "HEAD"
    ref_label: ClassVar[str] = "Git ref (branch, tag, or commit)"
    #: How the front end encodes the repo part of a spec: ``path`` (as typed),
    #: ``escaped-url`` (encodeURIComponent of it) or ``doi`` (a DOI, slashes kept)
    url_to_spec_repo: ClassVar[str] = "path"
    #: Off unless the operator lists the prefix in ``enabled_providers``
    enabled_by_default: ClassVar[bool] = True
    #: Serve only specs the operator lists in ``allowed_specs`` (an empty list refuses all)
    needs_allow: ClassVar[bool] = False

    def __init__(self, spec: str, config: dict[str, Any], *, session: requests.Session | None = None) -> None:
        self.spec = spec
        self.config = config
        self.unresolved_ref = ""
        self._session = session

    @property
    def session(self) -> requests.Session:
        """The HTTP session for this provider's API: the process's shared one unless one was given."""
        return self._session if self._session is not None else shared_session()

    def copy(self) -> Self:
        """This parsed provider again, without parsing (a shallow copy: the facts are strings)."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        return twin

    @classmethod
    def display_host(cls, config: dict[str, Any]) -> str:
        """The host ``{host}`` in :attr:`url_regex` stands for (configurable hosts override this)."""
        return ""

    @classmethod
    def display_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """This provider's entry of ``GET /api/repoproviders``."""
        host = js_regex_escape(cls.display_host(config))
        return {
            "id": cls.prefix,
            "display_name": cls.name,
            "spec_pattern": cls.spec_pattern,
            "url_regex": cls.url_regex.replace("{host}", host),
            "repo_label": cls.repo_label,
            "repo_placeholder": cls.repo_placeholder,
            "ref": {"enabled": cls.ref_enabled, "default": cls.ref_default if cls.ref_enabled else "",
                    "label": cls.ref_label if cls.ref_enabled else ""},
            "url_to_spec": {"repo": cls.url_to_spec_repo},
        }

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
    def resolve(self) -> Resolution:
        """Ask the host for the immutable ref and what follows from it; raises NotFound / ProviderError.

        Leaves the provider as it was (it may be shared by launches running at once).
        """
        raise NotImplementedError

    def resolution(self, ref: str, **found: Any) -> Resolution:
        """The :class:`Resolution` of ``ref`` from the parsed facts, with ``found`` replacing any of them."""
        facts: dict[str, Any] = {"build_slug": self.build_slug(), "resolved_spec": self.resolved_spec(ref),
                                 "ref_url": self.ref_url(ref)}
        return Resolution(ref=ref, **{**facts, **found})

    def resolved_spec(self, resolved_ref: str) -> str:
        """The spec with the ref replaced by the resolved one (for links that do not move)."""
        raise NotImplementedError

    def repo2docker_env(self) -> dict[str, str]:
        """Extra environment for repo2docker (credentials travel here, never in the URL)."""
        return {}

    def prebuilt_image(self) -> str | None:
        """The image to launch as is (no build), or None when the image is built from the repo."""
        return None
