"""GitHub repositories: ``gh/<user>/<repo>/<ref>``, resolved with the commits API.

The ref may contain slashes (``feature/x``), so the spec is split at most twice.
The API helper here is shared with the GitLab provider: both map the host's
answers to the same four errors, retry only what a retry can fix, and never put
a token into a message.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar

import requests

from app.errors import NotFound, ProviderError, RateLimited, SpecError
from providers.base import SHA1, RepoProvider
from providers.git import check_text
from providers.git_env import credential_env as git_credential_env

log = logging.getLogger(__name__)

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


def fetch(session: requests.Session, url: str, headers: dict[str, str], timeout: float,
          service: str, not_found: str, *, auth: tuple[str, str] | None = None,
          observe: Callable[[requests.Response], None] | None = None, allow_redirects: bool = True,
          ok: tuple[int, ...] = (200, 304)) -> requests.Response:
    """GET ``url``; a response with an ``ok`` status is returned, every failure becomes a Bindery error.

    5xx answers and connection failures are retried (they are usually brief);
    4xx answers are not (asking again gives the same answer).  ``observe`` sees
    every response (the rate-limit headers come on errors too).
    """
    where = urllib.parse.urlsplit(url)
    host = f"{where.scheme}://{where.netloc}"
    for attempt in range(len(RETRY_DELAYS) + 1):
        try:
            response = session.get(url, headers=headers, timeout=timeout, allow_redirects=allow_redirects,
                                   auth=auth)
        except requests.RequestException as exc:
            problem = f"could not reach the {service} API at {host}: {type(exc).__name__}"
        else:
            if observe is not None:
                observe(response)
            status = response.status_code
            if status in ok:
                return response
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


def json_body(response: requests.Response, service: str) -> Any:
    """The JSON of a 200 answer, or a clear error naming the host."""
    try:
        return response.json()
    except ValueError:
        where = urllib.parse.urlsplit(response.url)
        raise ProviderError(f"the {service} API at {where.scheme}://{where.netloc} "
                            "answered with invalid JSON") from None


def get_json(session: requests.Session, url: str, headers: dict[str, str], timeout: float,
             service: str, not_found: str, **kwargs: Any) -> Any:
    """GET ``url`` and return its JSON body (see :func:`fetch`)."""
    return json_body(fetch(session, url, headers, timeout, service, not_found, **kwargs), service)


# --- GitHub API state shared by every GitHubProvider of this process --------------------------

class _ResolvedCache:
    """Resolved refs by API URL with their ETag (LRU), and recent misses (expiring).

    A revalidation with ``If-None-Match`` that answers 304 costs no rate limit on
    GitHub; misses have no ETag, so they are only remembered for a few minutes
    (a branch may be pushed later).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._misses: dict[str, float] = {}

    def get(self, url: str) -> tuple[str, str] | None:
        with self._lock:
            entry = self._hits.get(url)
            if entry is not None:
                self._hits.move_to_end(url)
            return entry

    def put(self, url: str, etag: str, sha: str, size: int) -> None:
        if size <= 0:
            return
        with self._lock:
            self._hits[url] = (etag, sha)
            self._hits.move_to_end(url)
            while len(self._hits) > size:
                self._hits.popitem(last=False)

    def missing(self, url: str) -> bool:
        with self._lock:
            expires = self._misses.get(url)
            if expires is not None and expires <= time.monotonic():
                del self._misses[url]
                return False
            return expires is not None

    def put_miss(self, url: str, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            now = time.monotonic()
            if len(self._misses) > 10_000:
                self._misses = {k: v for k, v in self._misses.items() if v > now}
            self._misses[url] = now + seconds

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()
            self._misses.clear()


CACHE = _ResolvedCache()
_rate_limit_remaining: int | None = None


def github_rate_limit_remaining() -> int | None:
    """Requests GitHub still allows us in this window, from the last answer seen (None: none yet).

    For the ``bindery_github_rate_limit_remaining`` gauge.
    """
    return _rate_limit_remaining


def _observe_rate_limit(response: requests.Response) -> None:
    global _rate_limit_remaining
    value = response.headers.get("x-ratelimit-remaining", "")
    if value.isdigit():
        _rate_limit_remaining = int(value)
        limit = response.headers.get("x-ratelimit-limit", "")
        if limit.isdigit() and int(limit) and int(value) < 0.2 * int(limit):
            log.warning("GitHub rate limit remaining %s/%s", value, limit)


def github_headers(config: dict[str, Any]) -> tuple[dict[str, str], tuple[str, str] | None]:
    """Headers and basic auth for the GitHub API: the token, else the OAuth app's id and secret."""
    headers = {"Accept": "application/vnd.github+json"}
    if config.get("github_token"):
        headers["Authorization"] = f"token {config['github_token']}"
        return headers, None
    if config.get("github_client_id") and config.get("github_client_secret"):
        return headers, (str(config["github_client_id"]), str(config["github_client_secret"]))
    return headers, None


class GitHubProvider(RepoProvider):
    """A repository on GitHub (or GitHub Enterprise via ``github_api_url``/``github_url``)."""

    prefix: ClassVar[str] = "gh"
    name: ClassVar[str] = "GitHub"
    spec_pattern: ClassVar[str] = "<user>/<repo>/<ref>"
    url_regex: ClassVar[str] = r"^https?://{host}/([^/]+)/([^/]+?)(\.git)?(/(tree|blob)/([^/]+)(/(.*))?)?/?$"
    repo_label: ClassVar[str] = "GitHub repository name or URL"
    repo_placeholder: ClassVar[str] = "jupyterhub/binderhub or https://github.com/jupyterhub/binderhub"

    #: Refs that, when missing, mean "the default branch" (old links made before a rename)
    FALLBACK_REFS: ClassVar[tuple[str, ...]] = ("master", "main")

    def __init__(self, spec: str, config: dict[str, Any], session: requests.Session | None = None) -> None:
        super().__init__(spec, config)
        self.session = session if session is not None else requests.Session()
        parts = spec.split("/", 2)
        if len(parts) != 3 or not all(parts):
            hint = f" Did you mean {spec.rstrip('/')}/HEAD?" if len(parts) == 2 and all(parts) else ""
            raise SpecError(f"GitHub spec {spec[:100]!r} must be <user>/<repo>/<ref>, "
                            f"e.g. jupyterhub/binderhub/HEAD.{hint}")
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

    @classmethod
    def display_host(cls, config: dict[str, Any]) -> str:
        """The configured GitHub's host (GitHub Enterprise has its own)."""
        return urllib.parse.urlsplit(str(config["github_url"])).netloc

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

    def repo2docker_env(self) -> dict[str, str]:
        """git credentials for private repositories, as BinderHub forms them from the token."""
        token = self.config.get("github_token")
        if not token:
            return {}
        client_id = self.config.get("github_client_id")
        user, password = (str(client_id), str(token)) if client_id else (str(token), "x-oauth-basic")
        return git_credential_env(self._base("github_url"), user, password)

    def resolve_ref(self) -> str:
        """The commit sha of the ref, from ``GET /repos/{user}/{repo}/commits/{ref}``.

        A missing ``master`` or ``main`` falls back to the default branch, with a
        :attr:`notice` asking the user to update the link.
        """
        try:
            return self._resolve(self.unresolved_ref)
        except NotFound:
            if self.unresolved_ref not in self.FALLBACK_REFS:
                raise
        sha = self._resolve("HEAD")
        self.notice = (f"The branch {self.unresolved_ref!r} does not exist in {self.user}/{self.repo}; "
                       "launching its default branch (HEAD) instead. Please update your link to "
                       f"{self.user}/{self.repo}/HEAD.")
        return sha

    def _resolve(self, ref: str) -> str:
        url = (f"{self._base('github_api_url')}/repos/{self.user}/{self.repo}/commits/"
               f"{urllib.parse.quote(ref, safe='')}")
        not_found = (f"ref {ref!r} not found in GitHub repository {self.user}/{self.repo} "
                     "(check the spelling of the repository and ref; private repositories are not visible)")
        if CACHE.missing(url):
            raise NotFound(not_found)
        headers, auth = github_headers(self.config)
        cached = CACHE.get(url)
        if cached is not None:
            headers["If-None-Match"] = cached[0]
        try:
            response = fetch(self.session, url, headers, float(self.config["provider_timeout"]), "GitHub",
                             not_found, auth=auth, observe=_observe_rate_limit)
        except NotFound:
            CACHE.put_miss(url, float(self.config["github_miss_cache"]))
            raise
        if response.status_code == 304:
            if cached is None:
                raise ProviderError("the GitHub API answered 304 Not Modified to a request without an ETag")
            return cached[1]
        body = json_body(response, "GitHub")
        sha = body.get("sha") if isinstance(body, dict) else None
        if not isinstance(sha, str) or not SHA1.fullmatch(sha.lower()):
            raise ProviderError(f"the GitHub API gave no commit sha for {self.user}/{self.repo}")
        etag = response.headers.get("etag")
        if etag:
            CACHE.put(url, etag, sha.lower(), int(self.config["github_cache_size"]))
        return sha.lower()
