"""DataverseProvider: DOI → the installation (resolver redirect) → its native datasets API.

A threaded HTTP server on 127.0.0.1 plays both doi.org and the Dataverse
installation, replaying their documented real replies (recordings/doi_*.json,
recordings/dataverse_*.json), since neither is reachable here.
"""

from __future__ import annotations

import pytest

import providers.http as provider_http
from app.errors import NotFound, ProviderError
from providers.dataverse import DataverseProvider
from tests.providers.conftest import resolve_unchanged

DOI = "10.7910/DVN/TJCLKP"
API = "/api/datasets/:persistentId?persistentId=doi%3A10.7910%2FDVN%2FTJCLKP"


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    monkeypatch.setattr(provider_http, "RETRY_DELAYS", (0.01, 0.02))


@pytest.fixture
def dataverse(api_server, make_config, recording):
    redirect = recording("doi_zenodo_302")
    redirect["headers"]["location"] = f"{api_server.url}/citation?persistentId=doi:{DOI}"
    api_server.queue(f"/{DOI}", redirect)
    return lambda spec: DataverseProvider(spec, make_config(doi_resolver_url=api_server.url))


def test_resolve(dataverse, api_server, recording):
    api_server.queue(API, recording("dataverse_dataset_200"))
    p = dataverse(DOI)
    assert p.resolve().ref == "3323458.v3.0"
    assert p.build_slug() == "dataverse-dvn-2ftjclkp"
    assert p.resolved_spec("3323458.v3.0") == DOI
    assert p.ref_url("3323458.v3.0") == f"https://doi.org/{DOI}"
    assert p.repo_url() == f"https://doi.org/{DOI}"


def test_resolve_returns_what_the_api_named_and_leaves_the_provider(dataverse, api_server, recording):
    reply = recording("dataverse_dataset_200")
    reply["body"]["data"].update(identifier="DVN/OTHER", persistentUrl="https://doi.org/10.7910/DVN/OTHER")
    api_server.queue(API, reply)
    p = dataverse(DOI)
    found = resolve_unchanged(p)
    assert (found.ref, found.build_slug, found.resolved_spec, found.ref_url, found.notice) == (
        "3323458.v3.0", "dataverse-dvn-2fother", "10.7910/DVN/OTHER", "https://doi.org/10.7910/DVN/OTHER", None)
    assert (p.build_slug(), p.resolved_spec(found.ref)) == ("dataverse-dvn-2ftjclkp", DOI)  # the parse's


def test_not_found(dataverse, api_server, recording):
    api_server.queue(API, recording("dataverse_not_found_404"))
    with pytest.raises(NotFound, match="dataset doi:10.7910/DVN/TJCLKP not found"):
        dataverse(DOI).resolve()


def test_answer_without_version(dataverse, api_server, recording):
    reply = recording("dataverse_dataset_200")
    del reply["body"]["data"]["latestVersion"]
    api_server.queue(API, reply)
    with pytest.raises(ProviderError, match="gave no version"):
        dataverse(DOI).resolve()
