"""Figshare articles: ``figshare/<DOI>`` (e.g. ``figshare/10.6084/m9.figshare.9782777.v1``).

The DOI resolver redirects to ``.../articles/<type>/<title>/<id>[/<version>]``;
``<id>.v<version>`` (version 1 when absent) is the resolved ref, as in BinderHub.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import ClassVar

from providers.base import Resolution
from providers.doi import DoiProvider, resolve_doi, wrong_archive

_ARTICLE = re.compile(r"/articles/[^/]+/[^/]+/([0-9]+)(?:/([0-9]+))?/?\Z")


class FigshareProvider(DoiProvider):
    """A Figshare article by DOI."""

    prefix: ClassVar[str] = "figshare"
    name: ClassVar[str] = "Figshare DOI"
    doi_word: ClassVar[str] = "figshare"
    spec_pattern: ClassVar[str] = "<Figshare DOI>"
    url_regex: ClassVar[str] = r"^(https?://(dx\.)?doi\.org/|doi:)?(10\.[0-9]+/m9\.figshare\.[0-9]+(\.v[0-9]+)?)$"
    repo_label: ClassVar[str] = "Figshare DOI"
    repo_placeholder: ClassVar[str] = "10.6084/m9.figshare.9782777.v1"

    def resolve(self) -> Resolution:
        """``<article id>.v<version>`` of the article the DOI points to."""
        location = resolve_doi(self.session, self.config, self.doi)
        match = _ARTICLE.search(urllib.parse.urlsplit(location).path)
        if not match:
            raise wrong_archive(self.doi, location, "Figshare")
        return self.record(f"{match.group(1)}.v{match.group(2) or '1'}")
