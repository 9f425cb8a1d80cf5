"""Any git repository: ``git/<url-escaped clone URL>/<ref>``, resolved with ``git ls-remote``.

The spec is split at the first ``/`` (the URL must be escaped) and both parts
are unescaped, as BinderHub does.  Everything that reaches ``git`` is checked
first: no option-like values, only the allowed transports, no credentials in
the URL; ``git`` runs from an argument list (never a shell) with prompts off
and ``GIT_ALLOW_PROTOCOL`` limited to the same transports.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import unicodedata
import urllib.parse
from typing import Any, ClassVar

from app.errors import NotFound, ProviderError, SpecError
from providers.base import SHA1, RepoProvider, check_safe, redact_url

_SCHEMES = ("http", "https", "git")
_USERINFO = re.compile(r"(://)[^/\s@]*@")


def check_text(value: str, what: str) -> str:
    """``check_safe`` plus no Unicode separators, format or unencodable characters.

    Lone surrogates would fail later when encoded for git or a URL, and invisible
    or line-breaking characters make refs that look like other refs in logs.
    """
    check_safe(value, what)
    if any(unicodedata.category(ch)[0] in "CZ" for ch in value):
        raise SpecError(f"{what} contains whitespace, invisible or invalid characters, which are not allowed")
    return value


def _redact_text(text: str) -> str:
    """Drop any ``user:password@`` from URLs inside free text (git's stderr)."""
    return _USERINFO.sub(r"\1", text)


def pick_sha(listing: str, ref: str) -> str | None:
    """The sha ``ref`` names in ``git ls-remote`` output, choosing as git itself would.

    ls-remote patterns match ref *tails*, so ``main`` also matches
    ``refs/remotes/x/main``; only exact names count here, branches before tags,
    and an annotated tag gives its commit (the peeled ``^{}`` line), not the tag object.
    """
    refs: dict[str, str] = {}
    for line in listing.splitlines():
        sha, _, name = line.partition("\t")
        if SHA1.fullmatch(sha.strip().lower()) and name:
            refs.setdefault(name.strip(), sha.strip().lower())
    if ref == "HEAD":
        candidates = ["HEAD"]
    else:
        candidates = [f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", f"{ref}^{{}}", ref]
    for name in candidates:
        if name in refs:
            return refs[name]
    return None


class GitProvider(RepoProvider):
    """A repository reachable by URL over http(s), git:// or (if allowed) file://."""

    prefix: ClassVar[str] = "git"
    name: ClassVar[str] = "Git repository"
    spec_pattern: ClassVar[str] = "<url-escaped clone URL>/<ref>"
    url_regex: ClassVar[str] = r"^(https?|git)://[^/\s]+/[^\s]*$"
    repo_label: ClassVar[str] = "Arbitrary git repository URL"
    repo_placeholder: ClassVar[str] = "https://git.example.org/repo.git"
    url_to_spec_repo: ClassVar[str] = "escaped-url"

    def __init__(self, spec: str, config: dict[str, Any]) -> None:
        super().__init__(spec, config)
        quoted_url, sep, quoted_ref = spec.partition("/")
        if not sep or not quoted_url or not quoted_ref:
            raise SpecError("git spec must be <url-escaped clone URL>/<ref>, "
                            "e.g. https%3A%2F%2Fexample.org%2Frepo.git/main")
        self._quoted_url = quoted_url
        self.url = check_text(urllib.parse.unquote(quoted_url), "repository URL")
        self.unresolved_ref = check_text(urllib.parse.unquote(quoted_ref), "ref")
        self._check_url(self.url)

    def allowed_schemes(self) -> tuple[str, ...]:
        """Transports git may use; file:// only when the operator allows it."""
        return _SCHEMES + (("file",) if self.config.get("allow_file_urls") else ())

    def _check_url(self, url: str) -> None:
        allowed = self.allowed_schemes()
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise SpecError(f"repository URL is not a valid URL: {exc}") from None
        scheme = parts.scheme.lower()
        if "://" not in url or scheme not in allowed:
            raise SpecError(f"repository URL must start with one of {', '.join(s + '://' for s in allowed)}")
        if "@" in parts.netloc:
            raise SpecError("repository URL must not contain a user name or password; "
                            "credentials come from the server's configuration")
        if scheme == "file":
            if not parts.path or parts.netloc not in ("", "localhost"):
                raise SpecError("file:// URL must be file:///absolute/path")
        elif not parts.hostname or parts.hostname.startswith("-"):
            raise SpecError(f"repository URL must name a host, e.g. {scheme}://example.org/repo.git")

    def repo_url(self) -> str:
        """The clone URL as given (unescaped)."""
        return self.url

    def build_slug(self) -> str:
        """The clone URL, as BinderHub's git provider uses it."""
        return self.url

    def resolved_spec(self, resolved_ref: str) -> str:
        """The spec pinned to the commit (the ref may contain slashes, so rebuild it)."""
        return f"{self._quoted_url}/{resolved_ref}"

    def resolve_ref(self) -> str:
        """The commit sha: a full sha as given, otherwise what ``git ls-remote`` says."""
        ref = self.unresolved_ref
        if SHA1.fullmatch(ref.lower()):
            return ref.lower()
        listing = self._ls_remote(ref)
        sha = pick_sha(listing, ref)
        if sha is None:
            raise NotFound(f"ref {ref} not found in {redact_url(self.url)}")
        return sha

    def _ls_remote(self, ref: str) -> str:
        """Run ``git ls-remote -- URL REF REF^{}``; a timeout ends git and its helpers (own process group).

        The second pattern is needed because patterns do not match the peeled line of an annotated tag.
        """
        where = redact_url(self.url)
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0",
               "GIT_ALLOW_PROTOCOL": ":".join(self.allowed_schemes())}
        try:
            proc = subprocess.Popen(
                ["git", "ls-remote", "--", self.url, ref, f"{ref}^{{}}"], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True,
            )
        except OSError as exc:
            raise ProviderError(f"could not run git to reach {where}: {exc.strerror}") from None
        try:
            out, err = proc.communicate(timeout=float(self.config["provider_timeout"]))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            raise ProviderError(f"could not reach {where}: no answer within "
                                f"{self.config['provider_timeout']} seconds") from None
        if proc.returncode != 0:
            lines = [line.strip() for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
            last = _redact_text(lines[-1]) if lines else f"git exited with status {proc.returncode}"
            raise ProviderError(f"could not reach {where}: {last}")
        return out.decode("utf-8", "replace")
