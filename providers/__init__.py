"""Repository providers by URL prefix (``/v2/<prefix>/<spec>``).

A launch asks for its provider in the web request and again in several chain
steps; :func:`get_provider` parses each spec once per process and hands out
copies (providers are not changed by resolving: :meth:`RepoProvider.resolve`
returns what it found).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from app.errors import NotFound
from providers.base import RepoProvider, Resolution
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


__all__ = ["PROVIDERS", "RepoProvider", "Resolution", "enabled_providers", "get_provider"]

#: Parsed specs kept per process (a launch's steps and repeated launches of a repository reuse them)
PARSED_CACHE_SIZE = 512


class _Parsed:
    """A small LRU of parsed providers by (config, prefix, spec); bad specs are not kept.

    The key holds the config's ``id``; the entry holds the config itself, so that id
    cannot be reused by another dict while the entry lives.  Config is read-only once
    loaded (app/config.py), so a parse made with it stays right.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, str, str], RepoProvider] = OrderedDict()

    def get(self, cls: type[RepoProvider], spec: str, config: dict[str, Any]) -> RepoProvider:
        key = (id(config), cls.prefix, spec)
        with self._lock:
            provider = self._entries.get(key)
            if provider is not None and provider.config is config and type(provider) is cls:
                self._entries.move_to_end(key)
                return provider
        provider = cls(spec, config)  # outside the lock: git specs may do an address check
        with self._lock:
            self._entries[key] = provider
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return provider

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_parsed = _Parsed(PARSED_CACHE_SIZE)


def get_provider(prefix: str, spec: str, config: dict[str, Any]) -> RepoProvider:
    """The parsed provider for ``prefix``, after the operator's rules on specs: a copy of the caller's own.

    Unknown or disabled prefixes are a 404 like an unknown page; a bad spec is a
    400 :class:`~app.errors.SpecError`; a spec the operator bans (or does not allow)
    is a 403 :class:`~app.errors.Banned`.  The operator's rules are checked on every
    call; the parse is done once per process (cheap to call in every step).
    """
    served = {cls.prefix: cls for cls in enabled_providers(config)}
    cls = served.get(prefix)
    if cls is None:
        raise NotFound(f"unknown provider {prefix!r}; known: {', '.join(served)}")
    provider = _parsed.get(cls, spec, config)
    check_allowed(prefix, spec, config, needs_allow=cls.needs_allow)
    return provider.copy()
