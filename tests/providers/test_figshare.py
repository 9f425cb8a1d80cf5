"""FigshareProvider: DOI → article id and version, through the DOI resolver's redirect.

A threaded HTTP server on 127.0.0.1 replays doi.org's documented real replies
(recordings/doi_figshare_*.json), since neither doi.org nor Figshare is reachable here.
"""

from __future__ import annotations

import pytest

from app.errors import NotFound
from providers.figshare import FigshareProvider

DOI = "10.6084/m9.figshare.9782777.v1"


@pytest.fixture
def figshare(api_server, make_config):
    return lambda spec: FigshareProvider(spec, make_config(doi_resolver_url=api_server.url))


def test_resolve_with_version(figshare, api_server, recording):
    api_server.queue(f"/{DOI}", recording("doi_figshare_302"))
    p = figshare(DOI)
    found = p.resolve()
    assert found.ref == "9782777.v1"
    assert found.build_slug == "figshare-9782777.v1"
    assert p.resolved_spec("9782777.v1") == DOI
    assert p.repo_url() == f"https://doi.org/{DOI}"


def test_no_version_is_version_one(figshare, api_server, recording):
    api_server.queue("/10.6084/m9.figshare.9782777", recording("doi_figshare_noversion_302"))
    assert figshare("10.6084/m9.figshare.9782777").resolve().ref == "9782777.v1"


def test_not_found(figshare, api_server, recording):
    api_server.queue(f"/{DOI}", recording("doi_not_found_404"))
    with pytest.raises(NotFound):
        figshare(DOI).resolve()
    api_server.queue("/10.5281/zenodo.1", recording("doi_zenodo_302"))
    with pytest.raises(NotFound, match="does not point to a Figshare record"):
        figshare("10.5281/zenodo.1").resolve()
