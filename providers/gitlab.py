"""GitLab projects: ``gl/<url-escaped namespace/project>/<ref>``, resolved with API v4.

The namespace is escaped because GitLab groups nest (``group/sub/project``); it
is split from the ref at the first ``/`` and then unescaped, as BinderHub does.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, ClassVar

from app.errors import ProviderError, SpecError
from providers.base import SHA1, RepoProvider, Resolution, check_ref
from providers.git_env import credential_env as git_credential_env
from providers.http import get_json

_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")


class GitLabProvider(RepoProvider):
    """A project on gitlab.com or the instance named by ``gitlab_url``."""

    prefix: ClassVar[str] = "gl"
    name: ClassVar[str] = "GitLab"
    spec_pattern: ClassVar[str] = "<url-escaped namespace/project>/<ref>"
    url_regex: ClassVar[str] = r"^https?://{host}/([^/]+(/[^/-][^/]*)+?)(\.git)?(/-/(tree|blob)/([^/]+)(/(.*))?)?/?$"
    repo_label: ClassVar[str] = "GitLab repository name or URL"
    repo_placeholder: ClassVar[str] = "gitlab-org/gitlab-docs or https://gitlab.com/gitlab-org/gitlab-docs"
    url_to_spec_repo: ClassVar[str] = "escaped-url"

    def __init__(self, spec: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(spec, config, **kwargs)
        quoted, sep, ref = spec.partition("/")
        if not sep or not quoted or not ref:
            raise SpecError(f"GitLab spec {spec[:100]!r} must be <url-escaped namespace/project>/<ref>, "
                            "e.g. gitlab-org%2Fgitlab-docs/HEAD")
        namespace = urllib.parse.unquote(quoted)
        if namespace.endswith(".git"):
            namespace = namespace[: -len(".git")]
        segments = namespace.split("/")
        if len(segments) < 2 or ".." in namespace or not all(
            _SEGMENT.fullmatch(s) and s != "." and not s.startswith("-") for s in segments
        ):
            raise SpecError(f"GitLab project {namespace[:100]!r} must be namespace/project (escape the '/' "
                            "as %2F); each part may contain letters, digits, '_', '.' and '-' (not first)")
        self.namespace = namespace
        self.unresolved_ref = check_ref(urllib.parse.unquote(ref))

    @classmethod
    def display_host(cls, config: dict[str, Any]) -> str:
        """The configured GitLab instance's host."""
        return urllib.parse.urlsplit(str(config["gitlab_url"])).netloc

    def repo2docker_env(self) -> dict[str, str]:
        """git credentials from the private token, for private projects (as BinderHub does)."""
        token = self.config.get("gitlab_token")
        return git_credential_env(self._base(), "binderhub", str(token)) if token else {}

    def _base(self) -> str:
        return str(self.config["gitlab_url"]).rstrip("/")

    def repo_url(self) -> str:
        """The ``.git`` URL repo2docker clones."""
        return f"{self._base()}/{self.namespace}.git"

    def build_slug(self) -> str:
        """``group-sub-project``, as BinderHub builds it."""
        return "-".join(self.namespace.split("/"))

    def ref_url(self, resolved_ref: str) -> str:
        """The tree of the resolved commit in the GitLab web UI."""
        return f"{self._base()}/{self.namespace}/-/tree/{resolved_ref}"

    def resolved_spec(self, resolved_ref: str) -> str:
        """The spec pinned to the commit (the ref may contain slashes, so rebuild it)."""
        return f"{urllib.parse.quote(self.namespace, safe='')}/{resolved_ref}"

    def resolve(self) -> Resolution:
        """The commit id of the ref, from ``GET /projects/{id}/repository/commits/{ref}``."""
        project = urllib.parse.quote(self.namespace, safe="")
        ref = urllib.parse.quote(self.unresolved_ref, safe="")
        url = f"{self._base()}/api/v4/projects/{project}/repository/commits/{ref}"
        headers = {"Accept": "application/json"}
        if self.config.get("gitlab_token"):
            headers["PRIVATE-TOKEN"] = str(self.config["gitlab_token"])
        body = get_json(
            self.session, url, headers, float(self.config["provider_timeout"]), "GitLab",
            f"ref {self.unresolved_ref!r} not found in GitLab project {self.namespace} "
            "(check the spelling of the project and ref; private projects are not visible)",
        )
        sha = body.get("id") if isinstance(body, dict) else None
        if not isinstance(sha, str) or not SHA1.fullmatch(sha.lower()):
            raise ProviderError(f"the GitLab API gave no commit id for {self.namespace}")
        return self.resolution(sha.lower())
