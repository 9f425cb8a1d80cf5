"""GitLabProvider: spec parsing and ``resolve`` against a replaying API server.

The real GitLab API is unreachable here, so a threaded HTTP server on 127.0.0.1
replays the service's documented real reply shapes (recordings/gitlab_*.json:
a commit, "404 Project Not Found", "404 Commit Not Found", 429 with RateLimit-*
headers, 500) and records the requests it got.
"""

from __future__ import annotations

import time

import pytest

import providers.http as provider_http
from app.errors import NotFound, ProviderError, RateLimited, SpecError
from providers import get_provider
from providers.gitlab import GitLabProvider

SHA = "6104942438c14ec7bd21c6cd5bd995272b3faff6"
TOKEN = "glpat-secretTOKEN12345"
PATH = "/api/v4/projects/gitlab-org%2Fgitlab-docs/repository/commits/"


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    monkeypatch.setattr(provider_http, "RETRY_DELAYS", (0.01, 0.02))


@pytest.fixture
def gl(api_server, make_config):
    def build(spec, **overrides):
        return GitLabProvider(spec, make_config(gitlab_url=api_server.url + "/", **overrides))
    return build


@pytest.mark.parametrize("spec, namespace, ref", [
    ("gitlab-org%2Fgitlab-docs/HEAD", "gitlab-org/gitlab-docs", "HEAD"),
    ("group%2Fsub%2Fproject/feature/x", "group/sub/project", "feature/x"),
    ("group%2Fproject.git/v1.0", "group/project", "v1.0"),
    ("g_1.x%2Fp-2/feature%2Fy", "g_1.x/p-2", "feature/y"),
])
def test_parse(gl, api_server, spec, namespace, ref):
    p = gl(spec)
    assert (p.namespace, p.unresolved_ref) == (namespace, ref)
    assert p.repo_url() == f"{api_server.url}/{namespace}.git"
    assert p.build_slug() == "-".join(namespace.split("/"))
    assert p.ref_url(SHA) == f"{api_server.url}/{namespace}/-/tree/{SHA}"
    assert p.resolved_spec(SHA) == f"{namespace.replace('/', '%2F')}/{SHA}"
    assert isinstance(get_provider("gl", spec, p.config), GitLabProvider)


@pytest.mark.parametrize("spec", [
    "", "group", "group%2Fproject", "group%2Fproject/", "project/main", "/main",
    "group%2F%2Fproject/main", "group%2F..%2Fproject/main", "group%2F.%2Fproject/main", "..%2Fx/main",
    "-group%2Fproject/main", "group%2F-project/main", "gr oup%2Fproject/main", "gr%20oup%2Fproject/main",
    "group%2Fpro~ject/main", "group%2Fproject/--upload-pack=touch x", "group%2Fproject/-x",
    "group%2Fproject/a%0Ab", "group%2Fproject/a%00b", "group%2Fproject/..", "group%2Fproject/%E2%80%AE",
    "group%2Fproject%0A/main", "group%2Fproject\n/main",  # '$' matches before a final newline
])
def test_bad_specs(gl, spec):
    with pytest.raises(SpecError) as err:
        gl(spec)
    assert err.value.status_code == 400 and err.value.message


def test_resolve_200_without_token(gl, api_server, recording):
    api_server.queue(PATH + "feature%2Fx", recording("gitlab_commit_200"))
    assert gl("gitlab-org%2Fgitlab-docs/feature/x").resolve().ref == SHA
    assert "private-token" not in api_server.requests[0][1]


def test_token_sent_as_header_never_in_messages(gl, api_server, recording):
    api_server.queue(PATH + "main", recording("gitlab_commit_200"))
    api_server.queue(PATH + "gone", recording("gitlab_commit_not_found_404"))
    api_server.queue(PATH + "boom", recording("gitlab_server_error_500"))
    assert gl("gitlab-org%2Fgitlab-docs/main", gitlab_token=TOKEN).resolve().ref == SHA
    assert api_server.requests[0][1]["private-token"] == TOKEN
    assert all(TOKEN not in path for path, _ in api_server.requests)
    for ref in ("gone", "boom"):
        with pytest.raises((NotFound, ProviderError)) as err:
            gl(f"gitlab-org%2Fgitlab-docs/{ref}", gitlab_token=TOKEN).resolve()
        assert TOKEN not in str(err.value) and TOKEN not in repr(err.value.to_dict())


@pytest.mark.parametrize("name", ["gitlab_project_not_found_404", "gitlab_commit_not_found_404"])
def test_not_found(gl, api_server, recording, name):
    api_server.queue(PATH + "nope", recording(name))
    with pytest.raises(NotFound, match="ref 'nope' not found in GitLab project gitlab-org/gitlab-docs") as e:
        gl("gitlab-org%2Fgitlab-docs/nope").resolve()
    assert e.value.status_code == 404


def test_rate_limited_gives_minutes(gl, api_server, recording):
    reply = recording("gitlab_rate_limit_429")
    reply["headers"]["ratelimit-reset"] = str(int(time.time()) + 300)
    api_server.queue(PATH + "main", reply)
    with pytest.raises(RateLimited) as err:
        gl("gitlab-org%2Fgitlab-docs/main").resolve()
    assert err.value.message == "GitLab API rate limit exceeded, try again in 5 minutes"
    assert len(api_server.requests) == 1


def test_500_twice_then_200_succeeds(gl, api_server, recording):
    error = recording("gitlab_server_error_500")
    api_server.queue(PATH + "main", error, error, recording("gitlab_commit_200"))
    assert gl("gitlab-org%2Fgitlab-docs/main").resolve().ref == SHA
    assert len(api_server.requests) == 3


def test_500_always_is_provider_error(gl, api_server, recording):
    api_server.queue(PATH + "main", recording("gitlab_server_error_500"))
    with pytest.raises(ProviderError, match=r"GitLab API .* answered 500") as err:
        gl("gitlab-org%2Fgitlab-docs/main").resolve()
    assert err.value.status_code == 502
    assert len(api_server.requests) == 3


def test_connection_refused_is_provider_error(make_config, closed_port):
    config = make_config(gitlab_url=f"http://127.0.0.1:{closed_port}", gitlab_token=TOKEN)
    p = GitLabProvider("a%2Fb/main", config)
    with pytest.raises(ProviderError, match="could not reach the GitLab API") as err:
        p.resolve()
    assert TOKEN not in err.value.message
