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
import urllib.parse
from typing import Any, ClassVar

from app import netguard
from app.errors import NotFound, ProviderError, SpecError
from providers.base import SHA1, RepoProvider, Resolution, check_safe, check_text, redact_text, redact_url
from providers.git_env import NO_PROMPTS, ssh_enabled, ssh_env, with_https_credentials

_SCHEMES = ("http", "https", "git")
#: scp-like ssh (``[user@]host:path``), as git reads a URL without ``://`` and a ``:`` before any ``/``
_SCP = re.compile(r"\A(?:(?P<user>[^@/:]*)@)?(?P<host>\[[^\]/]*\]|[^@/:\[\]]+):(?P<path>.*)\Z")
#: git runs ``<name>::<address>`` through a remote helper (``ext::`` runs commands): never ssh
_HELPER = re.compile(r"\A[A-Za-z0-9+.-]+::")
#: An ssh login name is not a secret (``git@``); only plain names, never an option
_SSH_USER = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9._-]{0,63}\Z")
_HOST_NAME = re.compile(r"\A[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\Z")
#: git's stderr when the server wants credentials we do not have (http) or refuses our key (ssh)
_AUTH_FAILED = ("could not read Username", "could not read Password", "Authentication failed",
                "The requested URL returned error: 401", "The requested URL returned error: 403",
                "Permission denied (")


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
    """A repository reachable by URL over http(s), git://, or (if allowed) ssh and file://."""

    prefix: ClassVar[str] = "git"
    name: ClassVar[str] = "Git repository"
    spec_pattern: ClassVar[str] = "<url-escaped clone URL>/<ref>"
    url_regex: ClassVar[str] = r"^(https?|git)://[^/\s]+/[^\s]*$"
    repo_label: ClassVar[str] = "Arbitrary git repository URL"
    repo_placeholder: ClassVar[str] = "https://git.example.org/repo.git"
    url_to_spec_repo: ClassVar[str] = "escaped-url"

    def __init__(self, spec: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(spec, config, **kwargs)
        quoted_url, sep, quoted_ref = spec.partition("/")
        if not sep or not quoted_url or not quoted_ref:
            raise SpecError("git spec must be <url-escaped clone URL>/<ref>, "
                            "e.g. https%3A%2F%2Fexample.org%2Frepo.git/main")
        self._quoted_url = quoted_url
        self.url = check_text(urllib.parse.unquote(quoted_url), "repository URL")
        #: The URL whose host and port git connects to (scp-like ssh rewritten as ssh://), for address checks
        self.address_url = self.url
        self.unresolved_ref = check_text(urllib.parse.unquote(quoted_ref), "ref")
        self._check_url(self.url)

    def allowed_schemes(self) -> tuple[str, ...]:
        """Transports git may use; ssh and file:// only when the operator allows them."""
        return (_SCHEMES + (("ssh",) if ssh_enabled(self.config) else ())
                + (("file",) if self.config.get("allow_file_urls") else ()))

    def _check_scp(self, url: str) -> None:
        """``[user@]host:path``: a plain user and host, a path that is no option."""
        match = None if _HELPER.match(url) else _SCP.match(url)
        if match is None:
            raise SpecError("repository URL must be scheme://host/path, or user@host:path for ssh")
        user, host, path = match.group("user"), match.group("host"), match.group("path")
        if user is not None and not _SSH_USER.fullmatch(user):
            raise SpecError("ssh user name may only contain letters, digits, '.', '_' and '-' (not first); "
                            "passwords are never accepted in a URL")
        hostname = host[1:-1] if host.startswith("[") else host
        if not hostname or not (_HOST_NAME.fullmatch(hostname) or host.startswith("[")):
            raise SpecError(f"ssh repository URL must name a host, e.g. git@example.org:{path or 'repo.git'}")
        if not path or path.startswith("-") or "@" in path:
            raise SpecError("ssh repository path must be given, must not start with '-' and holds no '@' "
                            "(user@host:path; passwords are never accepted in a URL)")
        self.address_url = f"ssh://{host}/"
        netguard.check_literal(hostname, self.config, "repository URL")

    def _check_url(self, url: str) -> None:
        allowed = self.allowed_schemes()
        if "://" not in url and "ssh" in allowed:
            self._check_scp(url)
            return
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise SpecError(f"repository URL is not a valid URL: {exc}") from None
        scheme = parts.scheme.lower()
        if "://" not in url or scheme not in allowed:
            scp = " (or be user@host:path for ssh)" if "ssh" in allowed else ""
            raise SpecError(f"repository URL must start with one of {', '.join(s + '://' for s in allowed)}{scp}")
        if scheme == "ssh" and "@" in parts.netloc:
            user = parts.netloc.rpartition("@")[0]
            if not _SSH_USER.fullmatch(user):
                raise SpecError("ssh user name may only contain letters, digits, '.', '_' and '-' (not first); "
                                "passwords are never accepted in a URL")
        elif "@" in parts.netloc:
            raise SpecError("repository URL must not contain a user name or password; "
                            "credentials come from the server's configuration")
        if scheme == "ssh" and not parts.path.strip("/"):
            raise SpecError("ssh repository URL must name a path, e.g. ssh://git@example.org/repo.git")
        if scheme == "file":
            if not parts.path or parts.netloc not in ("", "localhost"):
                raise SpecError("file:// URL must be file:///absolute/path")
        elif not parts.hostname or parts.hostname.startswith("-"):
            raise SpecError(f"repository URL must name a host, e.g. {scheme}://example.org/repo.git")
        else:  # an IP literal is judged at once; names after DNS, when git is about to connect
            netguard.check_literal(parts.hostname, self.config, "repository URL")

    def repo_url(self) -> str:
        """The clone URL as given (unescaped)."""
        return self.url

    def build_slug(self) -> str:
        """The clone URL, as BinderHub's git provider uses it."""
        return self.url

    def resolved_spec(self, resolved_ref: str) -> str:
        """The spec pinned to the commit (the ref may contain slashes, so rebuild it)."""
        return f"{self._quoted_url}/{resolved_ref}"

    def resolve(self) -> Resolution:
        """The commit sha: a full sha as given, otherwise what ``git ls-remote`` says."""
        ref = self.unresolved_ref
        if SHA1.fullmatch(ref.lower()):
            return self.resolution(ref.lower())
        listing = self._ls_remote(ref)
        sha = pick_sha(listing, ref)
        if sha is None:
            raise NotFound(f"ref {ref} not found in {redact_url(self.url)}")
        return self.resolution(sha)

    def _address_pins(self) -> list[tuple[str, str]]:
        """Refuse a host that resolves to a non-public address; git settings pinning the checked ones.

        A URL without a host (file://) has nothing to check.
        """
        if not urllib.parse.urlsplit(self.address_url).hostname:
            return []
        return netguard.git_pin_config(self.address_url,
                                       netguard.check_url_host(self.address_url, self.config, "repository URL"))

    def access_env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` plus what git needs to reach this repository: no prompts, only the allowed
        transports, and the operator's ssh settings or https credentials (in variables only)."""
        env = {**env, **NO_PROMPTS, "GIT_ALLOW_PROTOCOL": ":".join(self.allowed_schemes())}
        if self.address_url.startswith("ssh://") or self.url.lower().startswith("ssh://"):
            return {**env, **ssh_env(self.config)}
        return with_https_credentials(env, self.url, self.config)

    def repo2docker_env(self) -> dict[str, str]:
        """The same check again when repo2docker fetches, with git pinned to the addresses checked.

        A host that does not resolve now is left to git, which fails on it by itself.
        """
        try:
            return self.access_env(netguard.git_config_env(self._address_pins()))
        except ProviderError:  # (a refused address is an AddressRefused, which goes on up)
            return self.access_env({})

    def ls_remote_args(self, ref: str) -> list[str]:
        """git's arguments for listing ``ref``: user input only after ``--``, each value checked."""
        return ["ls-remote", "--", check_safe(self.url, "repository URL"), check_safe(ref, "ref"), f"{ref}^{{}}"]

    def _ls_remote(self, ref: str) -> str:
        """Run ``git ls-remote -- URL REF REF^{}``; a timeout ends git and its helpers (own process group).

        The second pattern is needed because patterns do not match the peeled line of an annotated tag.
        """
        where = redact_url(self.url)
        env = self.access_env(dict(os.environ))
        pins = [arg for key, value in self._address_pins() for arg in ("-c", f"{key}={value}")]
        try:
            proc = subprocess.Popen(
                ["git", *pins, *self.ls_remote_args(ref)], stdin=subprocess.DEVNULL,
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
            last = redact_text(lines[-1]) if lines else f"git exited with status {proc.returncode}"
            if any(sign in line for line in lines for sign in _AUTH_FAILED):
                raise NotFound(f"repository {where} was not found or needs credentials this server does not "
                               f"have (git said: {last})")
            if any("Host key verification failed" in line for line in lines):
                raise ProviderError(f"could not reach {where}: its ssh host key is not in the configured "
                                    "known hosts (git_ssh_known_hosts)")
            raise ProviderError(f"could not reach {where}: {last}")
        return out.decode("utf-8", "replace")
