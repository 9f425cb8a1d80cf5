"""Repository providers by URL prefix (``/v2/<prefix>/<spec>``)."""

from __future__ import annotations

from typing import Any

from app.errors import NotFound
from providers.base import RepoProvider
from providers.ckan import CKANProvider
from providers.dataverse import DataverseProvider
from providers.figshare import FigshareProvider
from providers.gist import GistProvider
from providers.git import GitProvider
from providers.github import GitHubProvider
from providers.gitlab import GitLabProvider
from providers.hydroshare import HydroshareProvider
from providers.image import ImageProvider
from providers.policy import check_allowed
from providers.swh import SoftwareHeritageProvider
from providers.zenodo import ZenodoProvider

PROVIDERS: dict[str, type[RepoProvider]] = {
    cls.prefix: cls for cls in (
        GitHubProvider, GistProvider, GitLabProvider, GitProvider, ZenodoProvider, FigshareProvider,
        HydroshareProvider, DataverseProvider, CKANProvider, SoftwareHeritageProvider, ImageProvider,
    )
}


def enabled_providers(config: dict[str, Any]) -> list[type[RepoProvider]]:
    """The provider classes this Bindery serves, in the order of ``PROVIDERS``."""
    enabled = config.get("enabled_providers")
    if enabled is None:
        return [cls for cls in PROVIDERS.values() if cls.enabled_by_default]
    return [cls for prefix, cls in PROVIDERS.items() if prefix in enabled]


def get_provider(prefix: str, spec: str, config: dict[str, Any]) -> RepoProvider:
    """The parsed provider for ``prefix``, after the operator's rules on specs.

    Unknown or disabled prefixes are a 404 like an unknown page; a spec the
    operator bans (or does not allow) is a 403 :class:`~app.errors.Banned`.
    """
    served = {cls.prefix: cls for cls in enabled_providers(config)}
    cls = served.get(prefix)
    if cls is None:
        raise NotFound(f"unknown provider {prefix!r}; known: {', '.join(served)}")
    provider = cls(spec, config)
    check_allowed(prefix, spec, config, needs_allow=cls.needs_allow)
    return provider
