"""``GET /api/repoproviders``: the contract the landing page is built on."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from flask import Flask

from app import create_app
from app.redis_server import EmbeddedRedis

KEYS = {"id", "display_name", "spec_pattern", "url_regex", "repo_label", "repo_placeholder", "ref", "url_to_spec"}
# A URL each provider must recognise, and one it must not.
URLS = {
    "gh": ("https://github.com/jupyterhub/binderhub/tree/main", "https://gitlab.com/a/b"),
    "gist": ("https://gist.github.com/octocat/6cad326836d38bd3a7ae", "https://github.com/a/b"),
    "gl": ("https://gitlab.com/group/sub/project/-/tree/main", "https://github.com/a/b"),
    "git": ("https://git.example.org/repo.git", "ftp://x/y"),
    "zenodo": ("https://doi.org/10.5281/zenodo.3242074", "https://doi.org/10.6084/m9.figshare.1"),
    "figshare": ("10.6084/m9.figshare.9782777.v1", "10.5281/zenodo.3242074"),
    "hydroshare": ("https://www.hydroshare.org/resource/b8f6eae9d89241cf8b5904033460af61", "https://x.org/r/1"),
    "dataverse": ("https://doi.org/10.7910/DVN/TJCLKP", "https://github.com/a/b"),
    "ckan": ("https://demo.ckan.org/dataset/sample-dataset-1", "https://demo.ckan.org/group/x"),
    "swh": ("swh:1:rev:" + "a" * 40, "swh:1:cnt:" + "a" * 40),
    "image": ("quay.io/jupyter/base-notebook:2024-07-08", "https://github.com/a/b"),
}


@pytest.fixture
def all_enabled(redis_server: EmbeddedRedis) -> Flask:
    return create_app({"redis_url": redis_server.url, "launcher": "bench", "enabled_providers": list(URLS)})


def test_lists_enabled_providers_in_the_agreed_shape(client):
    response = client.get("/api/repoproviders")
    assert response.status_code == 200 and response.is_json
    body = response.get_json()
    assert [p["id"] for p in body] == [p for p in URLS if p != "image"], "image is off by default"
    gh = body[0]
    assert gh == {
        "id": "gh", "display_name": "GitHub", "spec_pattern": "<user>/<repo>/<ref>", "url_regex": gh["url_regex"],
        "repo_label": "GitHub repository name or URL", "repo_placeholder": gh["repo_placeholder"],
        "ref": {"enabled": True, "default": "HEAD", "label": "Git ref (branch, tag, or commit)"},
        "url_to_spec": {"repo": "path"},
    }
    for entry in body:
        assert set(entry) == KEYS
        assert entry["url_to_spec"]["repo"] in ("path", "escaped-url", "doi")
        assert set(entry["ref"]) == {"enabled", "default", "label"}


def test_url_regexes_detect_their_urls_in_python(all_enabled):
    body = all_enabled.test_client().get("/api/repoproviders").get_json()
    assert [p["id"] for p in body] == list(URLS)
    for entry in body:
        good, bad = URLS[entry["id"]]
        assert re.search(entry["url_regex"], good), (entry["id"], good)
        assert not re.search(entry["url_regex"], bad), (entry["id"], bad)


def test_url_regexes_are_javascript_regexes(all_enabled):
    """The same regexes, compiled and matched by node (with the strict ``u`` flag), agree."""
    node = shutil.which("node")
    assert node, "node is installed by scripts/test-setup.sh"
    body = all_enabled.test_client().get("/api/repoproviders").get_json()
    cases = [[e["url_regex"], *URLS[e["id"]]] for e in body]
    script = ("const cases = JSON.parse(process.argv[1]);"
              "console.log(JSON.stringify(cases.map(([r, g, b]) => { const x = new RegExp(r, 'u');"
              " return [x.test(g), x.test(b)]; })));")
    out = subprocess.run([node, "-e", script, json.dumps(cases)], capture_output=True, text=True,
                         timeout=30, check=True)
    assert json.loads(out.stdout) == [[True, False]] * len(cases)


def test_configured_hosts_show_in_the_regexes(redis_server: EmbeddedRedis):
    app = create_app({"redis_url": redis_server.url, "launcher": "bench", "github_url": "https://ghe.example.org",
                      "gitlab_url": "https://git.example.org:8443", "enabled_providers": ["gh", "gl"]})
    body = app.test_client().get("/api/repoproviders").get_json()
    assert re.search(body[0]["url_regex"], "https://ghe.example.org/a/b")
    assert not re.search(body[0]["url_regex"], "https://github.com/a/b")
    assert re.search(body[1]["url_regex"], "https://git.example.org:8443/a/b")
