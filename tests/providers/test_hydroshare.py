"""HydroshareProvider: resource id → last modification from the science-metadata API.

A threaded HTTP server on 127.0.0.1 (``hydroshare_url``) replays HydroShare's
documented real replies (recordings/hydroshare_*.json).
"""

from __future__ import annotations

import pytest

from app.errors import NotFound, SpecError
from providers.hydroshare import HydroshareProvider
from tests.providers.conftest import resolve_unchanged

RID = "b8f6eae9d89241cf8b5904033460af61"


@pytest.fixture
def hydroshare(api_server, make_config):
    return lambda spec: HydroshareProvider(spec, make_config(hydroshare_url=api_server.url))


@pytest.mark.parametrize("spec", [RID, f"https%3A%2F%2Fwww.hydroshare.org%2Fresource%2F{RID}"])
def test_resolve(hydroshare, api_server, recording, spec):
    api_server.queue(f"/hsapi/resource/{RID}/scimeta/elements", recording("hydroshare_scimeta_200"))
    p = hydroshare(spec)
    found = p.resolve()
    assert found.ref == f"{RID}.v1557174608"  # 2019-05-06T20:30:08Z
    assert found.build_slug == f"hydroshare-{RID}.v1557174608"
    assert p.repo_url() == f"{api_server.url}/resource/{RID}"


def test_resolve_leaves_the_provider(hydroshare, api_server, recording):
    api_server.queue(f"/hsapi/resource/{RID}/scimeta/elements", recording("hydroshare_scimeta_200"))
    p = hydroshare(RID)
    found = resolve_unchanged(p)
    assert (found.ref, found.build_slug, found.resolved_spec) == (
        f"{RID}.v1557174608", f"hydroshare-{RID}.v1557174608", RID)
    assert p.build_slug() == f"hydroshare-{RID}"


def test_not_found_and_bad_spec(hydroshare, api_server, recording):
    api_server.queue(f"/hsapi/resource/{RID}/scimeta/elements", recording("hydroshare_not_found_404"))
    with pytest.raises(NotFound):
        hydroshare(RID).resolve()
    with pytest.raises(SpecError):
        hydroshare("not-a-resource")
