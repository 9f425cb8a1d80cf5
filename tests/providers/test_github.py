"""GitHubProvider: spec parsing and ``resolve`` against a replaying API server.

The real GitHub API is unreachable here, so a threaded HTTP server on 127.0.0.1
replays the service's documented real reply shapes (recordings/github_*.json:
a commit, 404 Not Found, 422 "No commit found", 403 with x-ratelimit-remaining: 0,
500) and records the requests it got.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

import providers.github as github
import providers.http as provider_http
from app.errors import NotFound, ProviderError, RateLimited, SpecError
from providers import get_provider
from providers.github import GitHubProvider
from tests.providers.conftest import resolve_unchanged

SHA = "9f6a3c1e5d0b7a2948e1c6f3b8d2a7e4c0f5b1d9"
TOKEN = "ghp_secretTOKEN1234567890"


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    monkeypatch.setattr(provider_http, "RETRY_DELAYS", (0.01, 0.02))
    github.CACHE.clear()


@pytest.fixture
def gh(api_server, make_config):
    def build(spec, **overrides):
        config = make_config(github_api_url=api_server.url, github_url="https://github.example", **overrides)
        return GitHubProvider(spec, config)
    return build


@pytest.mark.parametrize("spec, user, repo, ref", [
    ("jupyterhub/binderhub/HEAD", "jupyterhub", "binderhub", "HEAD"),
    ("jupyterhub/binderhub.git/main", "jupyterhub", "binderhub", "main"),
    ("a-b/c.d_e/feature/with/slashes", "a-b", "c.d_e", "feature/with/slashes"),
    ("u/r/v1.0", "u", "r", "v1.0"),
])
def test_parse(gh, spec, user, repo, ref):
    p = gh(spec)
    assert (p.user, p.repo, p.unresolved_ref) == (user, repo, ref)
    assert p.repo_url() == f"https://github.example/{user}/{repo}"
    assert p.build_slug() == f"{user}-{repo}"
    assert p.ref_url(SHA) == f"https://github.example/{user}/{repo}/tree/{SHA}"
    assert p.resolved_spec(SHA) == f"{user}/{repo}/{SHA}"


@pytest.mark.parametrize("spec", [
    "", "user", "user/repo", "user/repo/", "/repo/ref", "user//ref",
    "-user/repo/main", "us_er/repo/main", "a" * 40 + "/repo/main", "user/re po/main",
    "user/" + "r" * 101 + "/main", "user/../main", "user/./main", "user/.git/main", "user/-repo/main",
    "user/repo/--upload-pack=touch x", "user/repo/-x", "user/repo/ma in", "user/repo/main\n",
    "user/repo/ma\x00in", "user/repo/..", "user/repo/a\u202eb", "user/repo/\ud800",
    "user\n/repo/main", "user/repo\n/main",  # '$' matches before a final newline: fullmatch needed
])
def test_bad_specs(gh, spec):
    with pytest.raises(SpecError) as err:
        gh(spec)
    assert err.value.status_code == 400 and err.value.message


def test_get_provider(make_config):
    assert isinstance(get_provider("gh", "u/r/main", make_config()), GitHubProvider)
    with pytest.raises(NotFound, match="unknown provider 'nope'; known: gh, gist, gl, git, ") as err:
        get_provider("nope", "u/r/main", make_config())
    assert err.value.status_code == 404


def test_resolve_200_without_token(gh, api_server, recording):
    api_server.queue("/repos/jupyterhub/binderhub/commits/feature%2Fx", recording("github_commit_200"))
    assert gh("jupyterhub/binderhub/feature/x").resolve().ref == SHA
    _, headers = api_server.requests[0]
    assert headers["accept"] == "application/vnd.github+json"
    assert "authorization" not in headers


def test_token_sent_as_header_never_in_messages(gh, api_server, recording):
    api_server.queue("/repos/u/r/commits/main", recording("github_commit_200"))
    api_server.queue("/repos/u/r/commits/gone", recording("github_not_found_404"))
    api_server.queue("/repos/u/r/commits/boom", recording("github_server_error_500"))
    p = gh("u/r/main", github_token=TOKEN)
    assert p.resolve().ref == SHA
    assert api_server.requests[0][1]["authorization"] == f"token {TOKEN}"
    assert all(TOKEN not in path for path, _ in api_server.requests)
    for spec in ("u/r/gone", "u/r/boom"):
        with pytest.raises((NotFound, ProviderError)) as err:
            gh(spec, github_token=TOKEN).resolve()
        assert TOKEN not in str(err.value) and TOKEN not in repr(err.value.to_dict())


@pytest.mark.parametrize("name", ["github_not_found_404", "github_no_commit_422"])
def test_not_found(gh, api_server, recording, name):
    api_server.queue("/repos/u/r/commits/no-such-branch", recording(name))
    with pytest.raises(NotFound, match="ref 'no-such-branch' not found in GitHub repository u/r") as err:
        gh("u/r/no-such-branch").resolve()
    assert err.value.status_code == 404


def test_rate_limited_gives_minutes(gh, api_server, recording):
    reply = recording("github_rate_limit_403")
    reply["headers"]["x-ratelimit-reset"] = str(int(time.time()) + 600)
    api_server.queue("/repos/u/r/commits/main", reply)
    with pytest.raises(RateLimited) as err:
        gh("u/r/main").resolve()
    assert err.value.status_code == 429
    assert err.value.message == "GitHub API rate limit exceeded, try again in 10 minutes"
    assert len(api_server.requests) == 1  # not retried


def test_403_without_rate_limit_is_provider_error(gh, api_server, recording):
    reply = recording("github_rate_limit_403")
    reply["headers"]["x-ratelimit-remaining"] = "12"
    api_server.queue("/repos/u/r/commits/main", reply)
    with pytest.raises(ProviderError, match="answered 403"):
        gh("u/r/main").resolve()


def test_500_twice_then_200_succeeds(gh, api_server, recording):
    error = recording("github_server_error_500")
    api_server.queue("/repos/u/r/commits/main", error, error, recording("github_commit_200"))
    assert gh("u/r/main").resolve().ref == SHA
    assert len(api_server.requests) == 3


def test_500_always_is_provider_error(gh, api_server, recording):
    api_server.queue("/repos/u/r/commits/main", recording("github_server_error_500"))
    with pytest.raises(ProviderError, match="answered 500 \\(tried 3 times\\)") as err:
        gh("u/r/main").resolve()
    assert err.value.status_code == 502
    assert len(api_server.requests) == 3


def test_connection_refused_is_provider_error(make_config, closed_port):
    p = GitHubProvider("u/r/main", make_config(github_api_url=f"http://127.0.0.1:{closed_port}",
                                               github_token=TOKEN))
    with pytest.raises(ProviderError, match="could not reach the GitHub API") as err:
        p.resolve()
    assert TOKEN not in err.value.message


def test_bad_body_is_provider_error(gh, api_server, recording):
    reply = recording("github_commit_200")
    reply["body"] = {"sha": "not-a-sha"}
    api_server.queue("/repos/u/r/commits/main", reply)
    with pytest.raises(ProviderError, match="no commit sha"):
        gh("u/r/main").resolve()


# --- cache, rate limit, fallback, credentials ---------------------------------------------------

def test_etag_revalidation_304_reuses_the_cached_sha(gh, api_server, recording):
    api_server.queue("/repos/u/r/commits/main", recording("github_commit_200"), recording("github_not_modified_304"))
    assert gh("u/r/main").resolve().ref == SHA
    assert gh("u/r/main").resolve().ref == SHA
    first, second = (headers for _, headers in api_server.requests)
    assert "if-none-match" not in first
    assert second["if-none-match"] == recording("github_commit_200")["headers"]["etag"]
    assert provider_http.github_rate_limit_remaining() == 57


def test_cache_is_lru_bounded(gh, api_server, recording):
    for ref in ("a", "b", "c"):
        api_server.queue(f"/repos/u/r/commits/{ref}", recording("github_commit_200"))
        gh(f"u/r/{ref}", github_cache_size=2).resolve()
    assert github.CACHE.get(f"{api_server.url}/repos/u/r/commits/a") is None
    assert github.CACHE.get(f"{api_server.url}/repos/u/r/commits/c") is not None


def test_misses_are_cached_for_a_while(gh, api_server, recording, monkeypatch):
    api_server.queue("/repos/u/r/commits/gone", recording("github_not_found_404"))
    for _ in range(3):
        with pytest.raises(NotFound):
            gh("u/r/gone").resolve()
    assert len(api_server.requests) == 1, "a miss is remembered"
    later = time.monotonic() + 301
    monkeypatch.setattr(github.time, "monotonic", lambda: later)
    with pytest.raises(NotFound):
        gh("u/r/gone").resolve()
    assert len(api_server.requests) == 2, "and forgotten after github_miss_cache seconds"


def test_rate_limit_remaining_is_recorded_from_errors_too(gh, api_server, recording):
    api_server.queue("/repos/u/r/commits/main", recording("github_rate_limit_403"))
    with pytest.raises(RateLimited):
        gh("u/r/main").resolve()
    assert provider_http.github_rate_limit_remaining() == 0


@pytest.mark.parametrize("ref", ["master", "main"])
def test_missing_master_or_main_falls_back_to_head_with_a_notice(gh, api_server, recording, ref):
    api_server.queue(f"/repos/u/r/commits/{ref}", recording("github_no_commit_422"))
    api_server.queue("/repos/u/r/commits/HEAD", recording("github_commit_200"))
    found = gh(f"u/r/{ref}").resolve()
    assert found.ref == SHA
    assert found.notice and f"{ref!r} does not exist" in found.notice and "u/r/HEAD" in found.notice


def test_the_notice_comes_with_the_resolution_not_on_the_provider(gh, api_server, recording):
    api_server.queue("/repos/u/r/commits/master", recording("github_no_commit_422"))
    api_server.queue("/repos/u/r/commits/HEAD", recording("github_commit_200"))
    p = gh("u/r/master", github_miss_cache=0)  # (a remembered miss would keep the fallback)
    found = resolve_unchanged(p)
    assert found.ref == SHA and found.notice and "'master' does not exist" in found.notice
    assert (found.build_slug, found.resolved_spec, found.ref_url) == (
        "u-r", f"u/r/{SHA}", f"https://github.example/u/r/tree/{SHA}")
    api_server.replies["/repos/u/r/commits/master"] = [recording("github_commit_200")]  # it exists now
    assert resolve_unchanged(p).notice is None


def test_other_missing_refs_do_not_fall_back(gh, api_server, recording):
    api_server.queue("/repos/u/r/commits/dev", recording("github_no_commit_422"))
    api_server.queue("/repos/u/r/commits/HEAD", recording("github_commit_200"))
    with pytest.raises(NotFound):
        gh("u/r/dev").resolve()


def test_client_id_and_secret_are_basic_auth(gh, api_server, recording):
    api_server.queue("/repos/u/r/commits/main", recording("github_commit_200"))
    gh("u/r/main", github_client_id="Iv1.abc", github_client_secret="s3cret").resolve()
    assert api_server.requests[0][1]["authorization"].startswith("Basic ")


def test_env_names_as_binderhub_documents(monkeypatch):
    from app.config import load_config

    config = load_config({}, environ={"GITHUB_ACCESS_TOKEN": "t", "GITHUB_CLIENT_ID": "i",
                                      "GITHUB_CLIENT_SECRET": "s"})
    assert (config["github_token"], config["github_client_id"], config["github_client_secret"]) == ("t", "i", "s")


def test_enterprise_host(make_config, api_server, recording):
    config = make_config(github_url="https://ghe.example.org", github_api_url=f"{api_server.url}/api/v3")
    api_server.queue("/api/v3/repos/u/r/commits/main", recording("github_commit_200"))
    p = GitHubProvider("u/r/main", config)
    assert p.resolve().ref == SHA
    assert p.repo_url() == "https://ghe.example.org/u/r"
    assert "ghe\\.example\\.org" in GitHubProvider.display_config(config)["url_regex"]


def test_git_credentials_travel_in_the_environment_only(make_config, tmp_path):
    """A real ``git credential fill`` with the provider's environment gets the token for that host only."""
    p = GitHubProvider("u/r/main", make_config(github_url="https://github.example", github_token=TOKEN))
    env = p.repo2docker_env()
    assert TOKEN not in p.repo_url() and all(TOKEN not in v for k, v in env.items() if k != "GIT_CREDENTIAL_USERNAME")
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0", **env}

    def fill(host):
        done = subprocess.run(["git", "credential", "fill"], input=f"protocol=https\nhost={host}\n\n",
                              env=base, capture_output=True, text=True, timeout=10)
        return done.stdout
    assert f"username={TOKEN}\npassword=x-oauth-basic" in fill("github.example")
    assert TOKEN not in fill("elsewhere.example")
    assert GitHubProvider("u/r/main", make_config()).repo2docker_env() == {}
