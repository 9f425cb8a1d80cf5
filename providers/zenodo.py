"""Zenodo records: ``zenodo/<DOI>`` (e.g. ``zenodo/10.5281/zenodo.3242074``).

The DOI resolver's redirect names the record (a concept DOI points at its latest
version); the record id is the resolved ref, as in BinderHub.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import ClassVar

from providers.base import Resolution
from providers.doi import DoiProvider, resolve_doi, wrong_archive

_RECORD = re.compile(r"/records?/([0-9]+)/?\Z")


class ZenodoProvider(DoiProvider):
    """A Zenodo record by DOI."""

    prefix: ClassVar[str] = "zenodo"
    name: ClassVar[str] = "Zenodo DOI"
    doi_word: ClassVar[str] = "zenodo"
    spec_pattern: ClassVar[str] = "<Zenodo DOI>"
    url_regex: ClassVar[str] = (r"^(https?://(dx\.)?doi\.org/|doi:)?(10\.[0-9]+/zenodo\.[0-9]+)$"
                                r"|^https?://zenodo\.org/records?/([0-9]+)/?$")
    repo_label: ClassVar[str] = "Zenodo DOI"
    repo_placeholder: ClassVar[str] = "10.5281/zenodo.3242074"

    def resolve(self) -> Resolution:
        """The record id the DOI currently points to."""
        location = resolve_doi(self.session, self.config, self.doi)
        match = _RECORD.search(urllib.parse.urlsplit(location).path)
        if not match:
            raise wrong_archive(self.doi, location, "Zenodo")
        return self.record(match.group(1))
