"""GitHub gists: ``gist/<user>/<gist-id>[/<ref>]``, resolved with the gists API.

The ref is a revision of the gist's history; ``HEAD`` (also ``master``, ``main``
or none) is the latest, as in BinderHub.  Secret gists are refused unless the
operator allows them (``gist_allow_secret``).
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, ClassVar

from app.errors import Banned, NotFound, ProviderError, SpecError
from providers.base import SHA1, RepoProvider, Resolution, check_github_user, check_ref
from providers.git_env import credential_env as git_credential_env
from providers.http import get_json, github_headers, observe_github_rate_limit

_GIST_ID = re.compile(r"\A[0-9a-fA-F]{1,64}\Z")
_LATEST = ("", "HEAD", "master", "main")


class GistProvider(RepoProvider):
    """A gist on GitHub (or GitHub Enterprise: same settings as ``gh``)."""

    prefix: ClassVar[str] = "gist"
    name: ClassVar[str] = "Gist"
    spec_pattern: ClassVar[str] = "<user>/<gist-id>/<ref>"
    url_regex: ClassVar[str] = r"^https?://{host}/([^/]+)/([0-9a-fA-F]+)(/([0-9a-fA-F]{40}))?/?$"
    repo_label: ClassVar[str] = "Gist ID (username/gistId) or URL"
    repo_placeholder: ClassVar[str] = "octocat/6cad326836d38bd3a7ae"
    ref_label: ClassVar[str] = "Git commit SHA"

    def __init__(self, spec: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(spec, config, **kwargs)
        parts = spec.split("/")
        if len(parts) == 3 and parts[2] == "":
            parts = parts[:2]
        if len(parts) not in (2, 3) or not all(parts):
            raise SpecError(f"gist spec {spec[:100]!r} must be <user>/<gist-id>/<ref>, "
                            "e.g. octocat/6cad326836d38bd3a7ae/HEAD")
        user, gist_id = check_github_user(parts[0]), parts[1]
        if not _GIST_ID.fullmatch(gist_id):
            raise SpecError(f"gist id {gist_id[:70]!r} must be hexadecimal")
        self.user, self.gist_id = user, gist_id.lower()
        self.unresolved_ref = check_ref(parts[2]) if len(parts) == 3 else "HEAD"

    @classmethod
    def display_host(cls, config: dict[str, Any]) -> str:
        return urllib.parse.urlsplit(cls.gist_base(config)).netloc + urllib.parse.urlsplit(
            cls.gist_base(config)).path

    @staticmethod
    def gist_base(config: dict[str, Any]) -> str:
        """gist.github.com for github.com; ``<host>/gist`` on GitHub Enterprise."""
        parts = urllib.parse.urlsplit(str(config["github_url"]).rstrip("/"))
        if parts.netloc == "github.com":
            return f"{parts.scheme}://gist.github.com"
        return f"{parts.scheme}://{parts.netloc}{parts.path}/gist"

    def repo_url(self) -> str:
        return f"{self.gist_base(self.config)}/{self.user}/{self.gist_id}.git"

    def build_slug(self) -> str:
        """The gist id, as BinderHub builds it."""
        return self.gist_id

    def ref_url(self, resolved_ref: str) -> str:
        return f"{self.gist_base(self.config)}/{self.user}/{self.gist_id}/{resolved_ref}"

    def resolved_spec(self, resolved_ref: str) -> str:
        return f"{self.user}/{self.gist_id}/{resolved_ref}"

    def repo2docker_env(self) -> dict[str, str]:
        token = self.config.get("github_token")
        if not token:
            return {}
        return git_credential_env(self.gist_base(self.config), str(token), "x-oauth-basic")

    def resolve(self) -> Resolution:
        """The latest revision for ``HEAD``, else the given revision if the gist has it."""
        headers, auth = github_headers(self.config)
        url = f"{str(self.config['github_api_url']).rstrip('/')}/gists/{self.gist_id}"
        body = get_json(self.session, url, headers, float(self.config["provider_timeout"]), "GitHub",
                        f"gist {self.gist_id} not found", auth=auth, observe=observe_github_rate_limit)
        if not isinstance(body, dict) or not isinstance(body.get("history"), list):
            raise ProviderError(f"the GitHub API gave no history for gist {self.gist_id}")
        if not body.get("public") and not self.config.get("gist_allow_secret"):
            raise Banned(f"gist {self.gist_id} is secret, and this Bindery does not launch secret gists "
                         "(an operator can allow them with gist_allow_secret).")
        versions = [str(entry.get("version", "")).lower() for entry in body["history"] if isinstance(entry, dict)]
        versions = [v for v in versions if SHA1.fullmatch(v)]
        if not versions:
            raise ProviderError(f"the GitHub API gave no revisions for gist {self.gist_id}")
        if self.unresolved_ref in _LATEST:
            return self.resolution(versions[0])
        if self.unresolved_ref.lower() not in versions:
            raise NotFound(f"revision {self.unresolved_ref!r} not found in gist {self.gist_id}")
        return self.resolution(self.unresolved_ref.lower())
