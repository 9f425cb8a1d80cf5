"""GitHub repositories: ``gh/<user>/<repo>/<ref>``, resolved with the commits API.

The ref may contain slashes (``feature/x``), so the spec is split at most twice.
The API helper here is shared with the GitLab provider: both map the host's
answers to the same four errors, retry only what a retry can fix, and never put
a token into a message.
"""

from __future__ import annotations

import math
import re
import time
import urllib.parse
from typing import Any, ClassVar

import requests

from app.errors import NotFound, ProviderError, RateLimited, SpecError
from providers.base import SHA1, RepoProvider
from providers.git import check_text

_USER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_REPO = re.compile(r"^[A-Za-z0-9._-]{1,100}$")

#: Seconds slept before each retry of a 5xx answer or a failed connection (two retries).
RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5)


def check_ref(ref: str) -> str:
    """A ref usable in an API path: safe for a command line and not a dot segment."""
    check_text(ref, "ref")
    if ref in (".", ".."):
        raise SpecError(f"ref {ref!r} is not a valid git ref")
    return ref


def _minutes_until(response: requests.Response) -> int:
    """Minutes until the host lifts its rate limit, from whichever header it sent."""
    headers = response.headers
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        value = headers.get(name, "")
        if value.isdigit():
            reset = int(value)
            seconds = reset - time.time() if reset > 10**9 else reset  # epoch, or seconds from now
            return max(1, math.ceil(seconds / 60))
    retry_after = headers.get("retry-after", "")
    if retry_after.isdigit():
        return max(1, math.ceil(int(retry_after) / 60))
    return 1


def _is_rate_limited(response: requests.Response) -> bool:
    headers = response.headers
    remaining = headers.get("x-ratelimit-remaining", headers.get("ratelimit-remaining"))
    if response.status_code == 429:
        return True
    return response.status_code == 403 and (remaining == "0" or "retry-after" in headers)


def get_json(session: requests.Session, url: str, headers: dict[str, str], timeout: float,
             service: str, not_found: str) -> Any:
    """GET ``url`` and return its JSON body, mapping every failure to a Bindery error.

    5xx answers and connection failures are retried (they are usually brief);
    4xx answers are not (asking again gives the same answer).
    """
    where = urllib.parse.urlsplit(url)
    host = f"{where.scheme}://{where.netloc}"
    for attempt in range(len(RETRY_DELAYS) + 1):
        try:
            response = session.get(url, headers=headers, timeout=timeout, allow_redirects=True)
        except requests.RequestException as exc:
            problem = f"could not reach the {service} API at {host}: {type(exc).__name__}"
        else:
            status = response.status_code
            if status == 200:
                try:
                    return response.json()
                except ValueError:
                    raise ProviderError(f"the {service} API at {host} answered with invalid JSON") from None
            if status in (404, 422):
                raise NotFound(not_found)
            if _is_rate_limited(response):
                raise RateLimited(f"{service} API rate limit exceeded, "
                                  f"try again in {_minutes_until(response)} minutes")
            if status == 401:
                raise ProviderError(f"the {service} API at {host} refused the configured token (401)")
            problem = f"the {service} API at {host} answered {status}"
            if status < 500:
                raise ProviderError(problem)
        if attempt < len(RETRY_DELAYS):
            time.sleep(RETRY_DELAYS[attempt])
    raise ProviderError(f"{problem} (tried {len(RETRY_DELAYS) + 1} times)")


class GitHubProvider(RepoProvider):
    """A repository on GitHub (or GitHub Enterprise via ``github_api_url``/``github_url``)."""

    prefix: ClassVar[str] = "gh"
    name: ClassVar[str] = "GitHub"

    def __init__(self, spec: str, config: dict[str, Any], session: requests.Session | None = None) -> None:
        super().__init__(spec, config)
        self.session = session if session is not None else requests.Session()
        parts = spec.split("/", 2)
        if len(parts) != 3 or not all(parts):
            raise SpecError(f"GitHub spec {spec[:100]!r} must be <user>/<repo>/<ref>, "
                            "e.g. jupyterhub/binderhub/HEAD")
        user, repo, ref = parts
        if not _USER.fullmatch(user):
            raise SpecError(f"GitHub user {user[:40]!r} may only contain letters, digits and '-' "
                            "(not first), at most 39 characters")
        if repo.endswith(".git"):
            repo = repo[: -len(".git")]
        if not _REPO.fullmatch(repo) or repo in (".", ".."):
            raise SpecError(f"GitHub repository {repo[:40]!r} may only contain letters, digits, '.', '_' "
                            "and '-', at most 100 characters")
        check_text(repo, "GitHub repository")
        self.user, self.repo = user, repo
        self.unresolved_ref = check_ref(ref)

    def _base(self, key: str) -> str:
        return str(self.config[key]).rstrip("/")

    def repo_url(self) -> str:
        """The clone and display URL on the configured GitHub."""
        return f"{self._base('github_url')}/{self.user}/{self.repo}"

    def build_slug(self) -> str:
        """``user-repo``, as BinderHub builds it."""
        return f"{self.user}-{self.repo}"

    def ref_url(self, resolved_ref: str) -> str:
        """The tree of the resolved commit."""
        return f"{self.repo_url()}/tree/{resolved_ref}"

    def resolved_spec(self, resolved_ref: str) -> str:
        """The spec pinned to the commit (the ref may contain slashes, so rebuild it)."""
        return f"{self.user}/{self.repo}/{resolved_ref}"

    def resolve_ref(self) -> str:
        """The commit sha of the ref, from ``GET /repos/{user}/{repo}/commits/{ref}``."""
        ref = urllib.parse.quote(self.unresolved_ref, safe="")
        url = f"{self._base('github_api_url')}/repos/{self.user}/{self.repo}/commits/{ref}"
        headers = {"Accept": "application/vnd.github+json"}
        if self.config.get("github_token"):
            headers["Authorization"] = f"token {self.config['github_token']}"
        body = get_json(
            self.session, url, headers, float(self.config["provider_timeout"]), "GitHub",
            f"ref {self.unresolved_ref!r} not found in GitHub repository {self.user}/{self.repo} "
            "(check the spelling of the repository and ref; private repositories are not visible)",
        )
        sha = body.get("sha") if isinstance(body, dict) else None
        if not isinstance(sha, str) or not SHA1.fullmatch(sha.lower()):
            raise ProviderError(f"the GitHub API gave no commit sha for {self.user}/{self.repo}")
        return sha.lower()
