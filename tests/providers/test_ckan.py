"""CKANProvider: dataset URL → version from the site's Action API.

A threaded HTTP server on 127.0.0.1 plays the CKAN site (the dataset URL in the
spec points at it), replaying CKAN's documented real replies (recordings/ckan_*.json).
"""

from __future__ import annotations

import urllib.parse

import pytest

from app.errors import NotFound, SpecError
from providers.ckan import CKANProvider

ACTIVITY = "0f5c0f8e-2a8f-4b6e-9a1b-1d2f3c4b5a69"


@pytest.fixture
def ckan(make_config):
    return lambda url: CKANProvider(urllib.parse.quote(url, safe=""), make_config())


def test_latest_version(ckan, api_server, recording):
    api_server.queue("/api/3/action/package_show?id=sample-dataset-1", recording("ckan_package_show_200"))
    p = ckan(f"{api_server.url}/dataset/sample-dataset-1")
    assert p.resolve().ref == "v1653038443"  # 2022-05-20T09:20:43Z
    assert p.repo_url() == f"{api_server.url}/dataset/sample-dataset-1"
    assert p.build_slug().endswith("-sample-dataset-1")


def test_activity_version(ckan, api_server, recording):
    api_server.queue("/api/3/action/package_show?id=sample-dataset-1", recording("ckan_package_show_200"))
    api_server.queue(f"/api/3/action/activity_show?id={ACTIVITY}", recording("ckan_activity_show_200"))
    p = ckan(f"{api_server.url}/dataset/sample-dataset-1?activity_id={ACTIVITY}")
    assert p.resolve().ref == f"a{ACTIVITY}"
    assert p.repo_url().endswith(f"?activity_id={ACTIVITY}")


def test_not_found(ckan, api_server, recording):
    api_server.queue("/api/3/action/package_show?id=nope", recording("ckan_not_found_404"))
    with pytest.raises(NotFound, match="CKAN dataset nope not found"):
        ckan(f"{api_server.url}/dataset/nope").resolve()


@pytest.mark.parametrize("url", ["ftp://h/dataset/x", "https://u:p@h/dataset/x", "https://h/x", "-https://h/dataset/x",
                                 "https://h/dataset/x?activity_id=zz;rm"])
def test_bad_specs(ckan, url):
    with pytest.raises(SpecError):
        ckan(url)
