"""GistProvider against a replaying API server.

A threaded HTTP server on 127.0.0.1 (``github_api_url``) replays the GitHub
gists API's documented real reply shape (recordings/github_gist_200.json, and
the GitHub 404 / 403 rate-limit recordings).
"""

from __future__ import annotations

import pytest

from app.errors import Banned, NotFound, RateLimited, SpecError
from providers.gist import GistProvider

GIST = "6cad326836d38bd3a7ae"
LATEST = "7d58e8b8a4b3e2f0c1d2e3f4a5b6c7d8e9f0a1b2"
OLDER = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c"


@pytest.fixture
def gist(api_server, make_config):
    return lambda spec, **kw: GistProvider(spec, make_config(github_api_url=api_server.url, **kw))


@pytest.mark.parametrize("ref, sha", [("HEAD", LATEST), ("main", LATEST), ("master", LATEST), (OLDER, OLDER)])
def test_resolve(gist, api_server, recording, ref, sha):
    api_server.queue(f"/gists/{GIST}", recording("github_gist_200"))
    p = gist(f"octocat/{GIST}/{ref}")
    assert p.resolve().ref == sha
    assert p.repo_url() == f"https://gist.github.com/octocat/{GIST}.git"
    assert p.build_slug() == GIST
    assert p.resolved_spec(sha) == f"octocat/{GIST}/{sha}"


def test_no_ref_is_latest(gist, api_server, recording):
    api_server.queue(f"/gists/{GIST}", recording("github_gist_200"))
    assert gist(f"octocat/{GIST}").resolve().ref == LATEST


def test_unknown_revision_and_gist(gist, api_server, recording):
    api_server.queue(f"/gists/{GIST}", recording("github_gist_200"))
    with pytest.raises(NotFound, match="revision"):
        gist(f"octocat/{GIST}/{'f' * 40}").resolve()
    api_server.queue("/gists/abc", recording("github_not_found_404"))
    with pytest.raises(NotFound):
        gist("octocat/abc/HEAD").resolve()


def test_secret_gist_refused_unless_allowed(gist, api_server, recording):
    reply = recording("github_gist_200")
    reply["body"]["public"] = False
    api_server.queue(f"/gists/{GIST}", reply)
    with pytest.raises(Banned, match="secret") as err:
        gist(f"octocat/{GIST}/HEAD").resolve()
    assert err.value.status_code == 403
    assert gist(f"octocat/{GIST}/HEAD", gist_allow_secret=True).resolve().ref == LATEST


def test_rate_limited(gist, api_server, recording):
    api_server.queue(f"/gists/{GIST}", recording("github_rate_limit_403"))
    with pytest.raises(RateLimited):
        gist(f"octocat/{GIST}/HEAD").resolve()


@pytest.mark.parametrize("spec", ["", "octocat", f"-x/{GIST}/HEAD", "octocat/not-hex/HEAD", f"octocat/{GIST}/a/b",
                                  f"octocat/{GIST}/-x"])
def test_bad_specs(gist, spec):
    with pytest.raises(SpecError):
        gist(spec)
