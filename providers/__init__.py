"""Repository providers by URL prefix (``/v2/<prefix>/<spec>``)."""

from __future__ import annotations

from typing import Any

from app.errors import NotFound
from providers.base import RepoProvider
from providers.git import GitProvider
from providers.github import GitHubProvider
from providers.gitlab import GitLabProvider

PROVIDERS: dict[str, type[RepoProvider]] = {
    GitHubProvider.prefix: GitHubProvider,
    GitLabProvider.prefix: GitLabProvider,
    GitProvider.prefix: GitProvider,
}


def get_provider(prefix: str, spec: str, config: dict[str, Any]) -> RepoProvider:
    """The parsed provider for ``prefix``; unknown prefixes are a 404 like an unknown page."""
    cls = PROVIDERS.get(prefix)
    if cls is None:
        raise NotFound(f"unknown provider {prefix!r}; known: {', '.join(PROVIDERS)}")
    return cls(spec, config)
