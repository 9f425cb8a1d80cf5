"""GitHub repositories: ``gh/<user>/<repo>/<ref>``, resolved with the commits API.

The ref may contain slashes (``feature/x``), so the spec is split at most twice.
Resolved refs are remembered with their ETag (:data:`CACHE`): asking again with
``If-None-Match`` costs no rate limit when GitHub answers 304.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from collections import OrderedDict
from typing import Any, ClassVar

from app.errors import NotFound, ProviderError, SpecError
from providers.base import SHA1, RepoProvider, Resolution, check_github_user, check_ref, check_text
from providers.git_env import credential_env as git_credential_env
from providers.http import fetch, github_headers, json_body, observe_github_rate_limit

_REPO = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


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

    def __init__(self, spec: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(spec, config, **kwargs)
        parts = spec.split("/", 2)
        if len(parts) != 3 or not all(parts):
            hint = f" Did you mean {spec.rstrip('/')}/HEAD?" if len(parts) == 2 and all(parts) else ""
            raise SpecError(f"GitHub spec {spec[:100]!r} must be <user>/<repo>/<ref>, "
                            f"e.g. jupyterhub/binderhub/HEAD.{hint}")
        user, repo, ref = parts
        check_github_user(user)
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

    def resolve(self) -> Resolution:
        """The commit sha of the ref, from ``GET /repos/{user}/{repo}/commits/{ref}``.

        A missing ``master`` or ``main`` falls back to the default branch, with a
        notice asking the user to update the link.
        """
        try:
            return self.resolution(self._resolve(self.unresolved_ref))
        except NotFound:
            if self.unresolved_ref not in self.FALLBACK_REFS:
                raise
        return self.resolution(self._resolve("HEAD"), notice=(
            f"The branch {self.unresolved_ref!r} does not exist in {self.user}/{self.repo}; "
            "launching its default branch (HEAD) instead. Please update your link to "
            f"{self.user}/{self.repo}/HEAD."))

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
                             not_found, auth=auth, observe=observe_github_rate_limit)
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
