"""What the archive providers share: DOI specs, and asking the DOI resolver where one points.

zenodo, figshare and dataverse specs are DOIs, as on mybinder.org.  The resolver
(``doi_resolver_url``, https://doi.org by default) answers a DOI with a redirect to
the archive's record; its ``Location`` names the record, so it is read rather than
followed.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, ClassVar

import requests

from app.errors import NotFound, ProviderError, SpecError
from providers.base import RepoProvider, Resolution, check_text
from providers.http import fetch

_DOI = re.compile(r"\A10\.[0-9]{4,9}/[A-Za-z0-9._;()/:-]{1,300}\Z")
_DOI_PREFIXES = ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/", "doi:")


def parse_doi(spec: str, what: str) -> str:
    """The DOI of a spec (``10.x/y``; a ``doi:`` or doi.org prefix is dropped), or a SpecError."""
    doi = urllib.parse.unquote(spec)
    for prefix in _DOI_PREFIXES:
        if doi.lower().startswith(prefix):
            doi = doi[len(prefix):]
            break
    check_text(doi, f"{what} DOI")
    if not _DOI.fullmatch(doi) or any(part in (".", "..") for part in doi.split("/")):
        raise SpecError(f"{what} spec {spec[:100]!r} must be a DOI such as 10.5281/zenodo.3242074")
    return doi


def resolve_doi(session: requests.Session, config: dict[str, Any], doi: str) -> str:
    """The absolute URL the DOI resolver redirects ``doi`` to."""
    base = str(config["doi_resolver_url"]).rstrip("/")
    url = f"{base}/{urllib.parse.quote(doi, safe='/:;()')}"
    response = fetch(session, url, {"Accept": "text/html"}, float(config["provider_timeout"]),
                     "DOI resolver", f"DOI {doi} is not registered (the DOI resolver at {base} does not know it)",
                     allow_redirects=False, ok=(301, 302, 303, 307, 308))
    location = response.headers.get("location")
    if not location:
        raise ProviderError(f"the DOI resolver at {base} gave no location for {doi}")
    return urllib.parse.urljoin(url, location)


def wrong_archive(doi: str, url: str, archive: str) -> NotFound:
    """A DOI of another archive: a NotFound that says where it points."""
    return NotFound(f"DOI {doi} does not point to a {archive} record (it points to "
                    f"{urllib.parse.urlsplit(url).netloc or url[:80]})")


class DoiProvider(RepoProvider):
    """A record in a data archive named by its DOI; the resolved ref is the record's version."""

    url_to_spec_repo: ClassVar[str] = "doi"
    ref_enabled: ClassVar[bool] = False
    #: Word of the archive in its DOIs (``10.5281/zenodo.123``), replaced when pinning a version
    doi_word: ClassVar[str] = ""

    def __init__(self, spec: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(spec, config, **kwargs)
        self.doi = parse_doi(spec, self.name)
        self.unresolved_ref = "HEAD"  # the latest version the DOI points to

    def repo_url(self) -> str:
        """The DOI as a URL: repo2docker's content provider for the archive resolves and fetches it."""
        return f"https://doi.org/{self.doi}"

    def build_slug(self) -> str:
        """``<archive>-<DOI>`` (:meth:`resolve` names the image ``<archive>-<record>``, see :meth:`record`)."""
        return f"{self.prefix}-{self.doi}"

    def record(self, record_id: str) -> Resolution:
        """The resolution naming the record ``record_id`` (its version is the resolved ref)."""
        return self.resolution(record_id, build_slug=f"{self.prefix}-{record_id}")

    def resolved_spec(self, resolved_ref: str) -> str:
        """The DOI of this very version, as BinderHub forms it."""
        return self.doi.split(self.doi_word)[0] + f"{self.doi_word}.{resolved_ref}"

    def ref_url(self, resolved_ref: str) -> str:
        return f"https://doi.org/{self.resolved_spec(resolved_ref)}"
