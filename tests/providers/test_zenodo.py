"""ZenodoProvider: DOI specs, resolved through the DOI resolver's redirect.

Neither doi.org nor Zenodo is reachable here: a threaded HTTP server on 127.0.0.1
(``doi_resolver_url``) replays doi.org's documented real replies
(recordings/doi_*.json: 302 with the record in Location, 404, 500).
"""

from __future__ import annotations

import pytest

import providers.http as provider_http
from app.errors import NotFound, ProviderError, SpecError
from providers.zenodo import ZenodoProvider
from tests.providers.conftest import resolve_unchanged

DOI = "10.5281/zenodo.3242074"


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    monkeypatch.setattr(provider_http, "RETRY_DELAYS", (0.01, 0.02))


@pytest.fixture
def zenodo(api_server, make_config):
    return lambda spec: ZenodoProvider(spec, make_config(doi_resolver_url=api_server.url))


@pytest.mark.parametrize("spec", [DOI, f"doi:{DOI}", f"https%3A%2F%2Fdoi.org%2F{DOI}"])
def test_parse_and_resolve(zenodo, api_server, recording, spec):
    api_server.queue(f"/{DOI}", recording("doi_zenodo_302"))
    p = zenodo(spec)
    assert p.doi == DOI and p.repo_url() == f"https://doi.org/{DOI}"
    found = p.resolve()
    assert found.ref == "3242074"
    assert found.build_slug == "zenodo-3242074"
    assert p.resolved_spec("3242074") == DOI
    assert p.ref_url("3242074") == f"https://doi.org/{DOI}"


def test_resolve_names_the_image_after_the_record_and_leaves_the_provider(zenodo, api_server, recording):
    api_server.queue(f"/{DOI}", recording("doi_zenodo_302"))
    p = zenodo(DOI)
    found = resolve_unchanged(p)
    assert (found.ref, found.build_slug, found.resolved_spec) == ("3242074", "zenodo-3242074", DOI)
    assert p.build_slug() == f"zenodo-{DOI}"  # the parse's, before any answer


def test_concept_doi_pins_the_latest_version(zenodo, api_server, recording):
    reply = recording("doi_zenodo_302")
    reply["headers"]["location"] = "https://zenodo.org/records/3242075"
    api_server.queue("/10.5281/zenodo.3242073", reply)
    p = zenodo("10.5281/zenodo.3242073")
    assert p.resolve().ref == "3242075"
    assert p.resolved_spec("3242075") == "10.5281/zenodo.3242075"


def test_missing_doi_and_other_archive(zenodo, api_server, recording):
    api_server.queue(f"/{DOI}", recording("doi_not_found_404"))
    with pytest.raises(NotFound, match="is not registered"):
        zenodo(DOI).resolve()
    api_server.queue("/10.6084/m9.figshare.1", recording("doi_figshare_302"))
    with pytest.raises(NotFound, match="does not point to a Zenodo record"):
        zenodo("10.6084/m9.figshare.1").resolve()


def test_server_error_is_retried_then_clear(zenodo, api_server, recording):
    api_server.queue(f"/{DOI}", recording("doi_server_error_500"))
    with pytest.raises(ProviderError, match="DOI resolver .* answered 500 \\(tried 3 times\\)"):
        zenodo(DOI).resolve()
    assert len(api_server.requests) == 3


@pytest.mark.parametrize("spec", ["", "zenodo.3242074", "10.5281", "10.5281/", "10.5281/../x", "-10.5281/x",
                                  "10.5281/zen odo", "10.5281/x\n"])
def test_bad_specs(zenodo, spec):
    with pytest.raises(SpecError):
        zenodo(spec)
