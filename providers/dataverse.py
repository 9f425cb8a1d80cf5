"""Dataverse datasets: ``dataverse/<DOI>`` (e.g. ``dataverse/10.7910/DVN/TJCLKP``).

The DOI resolver's redirect names the Dataverse installation; its native API
(``/api/datasets/:persistentId``) gives the dataset's latest version, and
``<dataset id>.v<major>.<minor>`` is the resolved ref, as in BinderHub.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, ClassVar

import escapism

from app.errors import ProviderError
from providers.base import Resolution
from providers.doi import DoiProvider, resolve_doi
from providers.http import get_json_guarded


class DataverseProvider(DoiProvider):
    """A dataset in any Dataverse installation, by DOI."""

    prefix: ClassVar[str] = "dataverse"
    name: ClassVar[str] = "Dataverse DOI"
    spec_pattern: ClassVar[str] = "<Dataverse DOI>"
    url_regex: ClassVar[str] = (r"^(https?://(dx\.)?doi\.org/|doi:)?(10\.[0-9]+/[A-Za-z0-9]+/[A-Za-z0-9]+)$"
                                r"|^https?://[^/]+/dataset\.xhtml\?persistentId=doi:(10\.[0-9]+/[^&]+)$")
    repo_label: ClassVar[str] = "Dataverse DOI"
    repo_placeholder: ClassVar[str] = "10.7910/DVN/TJCLKP"

    def __init__(self, spec: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(spec, config, **kwargs)
        self.identifier = self.doi.split("/", 1)[1]

    @staticmethod
    def slug_of(identifier: str) -> str:
        """``dataverse-<escaped identifier>``, as BinderHub names it."""
        return "dataverse-" + escapism.escape(identifier, escape_char="-").lower()

    def build_slug(self) -> str:
        """From the DOI's identifier (:meth:`resolve` names the image after the identifier the API gave)."""
        return self.slug_of(self.identifier)

    def resolved_spec(self, resolved_ref: str) -> str:
        """The DOI (:meth:`resolve` gives ``<authority>/<identifier>`` from the API: Dataverse DOIs name the
        dataset, not a version)."""
        return self.doi

    def ref_url(self, resolved_ref: str) -> str:
        """The DOI as a URL (:meth:`resolve` gives the dataset's persistent URL from the API)."""
        return self.repo_url()

    def resolve(self) -> Resolution:
        """``<id>.v<major>.<minor>`` of the dataset's latest version."""
        location = resolve_doi(self.session, self.config, self.doi)
        parts = urllib.parse.urlsplit(location)
        query = urllib.parse.urlencode({"persistentId": f"doi:{self.doi}"})
        api = f"{parts.scheme}://{parts.netloc}/api/datasets/:persistentId?{query}"
        # Whoever registered the DOI chose this host: only public addresses, no unchecked redirect.
        body = get_json_guarded(self.session, api, self.config, "Dataverse installation", "Dataverse",
                                f"dataset doi:{self.doi} not found in the Dataverse at {parts.netloc}")
        data = body.get("data") if isinstance(body, dict) and body.get("status") == "OK" else None
        try:
            latest = data["latestVersion"]  # type: ignore[index]
            record = f"{int(data['id'])}.v{int(latest['versionNumber'])}.{int(latest['versionMinorNumber'])}"  # type: ignore[index]
            return self.resolution(
                record, build_slug=self.slug_of(str(data["identifier"])),  # type: ignore[index]
                resolved_spec=f"{data['authority']}/{data['identifier']}",  # type: ignore[index]
                ref_url=str(data.get("persistentUrl") or self.repo_url()),  # type: ignore[union-attr]
            )
        except (KeyError, TypeError, ValueError):
            raise ProviderError(f"the Dataverse API at {parts.netloc} gave no version for doi:{self.doi}") from None
