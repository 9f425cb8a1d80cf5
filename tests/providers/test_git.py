"""GitProvider: spec parsing, refusal of unsafe input, and real ``git ls-remote`` resolution.

Resolution runs against a real bare repository served four ways on this machine:
file:// (with allow_file_urls), a real ``git daemon`` on 127.0.0.1, git's dumb
HTTP protocol from python's http.server on 127.0.0.1, and smart HTTP from the real
``git http-backend`` (tests/git_http.py).  ssh and credentials: test_git_access.py.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.parse

import pytest

import providers.git as git_module
from app.errors import NotFound, ProviderError, SpecError
from providers import get_provider
from providers.git import GitProvider, pick_sha
from tests.git_http import SmartGitServer


def spec_for(url: str, ref: str) -> str:
    return f"{urllib.parse.quote(url, safe='')}/{ref}"


@pytest.fixture
def config(make_config):
    return make_config(provider_timeout=10)


# --- parsing --------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, ref", [
    ("https://github.com/jupyterhub/binderhub", "main"),
    ("http://127.0.0.1:8080/a/b.git", "feature/with/slash"),
    ("git://example.org/repo.git", "v1.0"),
    ("https://example.org/~user/r%C3%A9po.git", "HEAD"),
])
def test_parse(config, url, ref):
    p = get_provider("git", spec_for(url, ref), config)
    assert isinstance(p, GitProvider)
    assert (p.repo_url(), p.build_slug(), p.unresolved_ref) == (url, url, ref)
    assert p.ref_url("a" * 40) == url
    assert p.resolved_spec("a" * 40) == f"{spec_for(url, 'a' * 40)}"


def test_ref_may_be_escaped_too(config):
    p = GitProvider(f"{urllib.parse.quote('https://example.org/r.git', safe='')}/feature%2Fx", config)
    assert p.unresolved_ref == "feature/x"


BAD = [
    ("no slash", "https%3A%2F%2Fexample.org%2Fr.git"),
    ("empty ref", spec_for("https://example.org/r.git", "")),
    ("unescaped URL", "https://example.org/r.git/main"),
    ("option as ref", spec_for("https://example.org/r.git", "--upload-pack=touch x")),
    ("option as ref, no space", spec_for("https://example.org/r.git", "--upload-pack=touch")),
    ("option as ref, escaped", spec_for("https://example.org/r.git", "--upload-pack%3Dtouch%20x")),
    ("option as URL", spec_for("--upload-pack=touch x", "main")),
    ("option as URL, no space", spec_for("--upload-pack=touch", "main")),
    ("space in ref", spec_for("https://example.org/r.git", "ma in")),
    ("tab in URL", spec_for("https://example.org/r\t.git", "main")),
    ("newline in ref", spec_for("https://example.org/r.git", "main%0A")),
    ("NUL in ref", spec_for("https://example.org/r.git", "ma%00in")),
    ("DEL in URL", spec_for("https://example.org/r\x7f.git", "main")),
    ("bidi override in ref", spec_for("https://example.org/r.git", "a%E2%80%AEb")),
    ("file URL not allowed", spec_for("file:///srv/repo.git", "main")),
    ("ext transport", spec_for("ext::sh -c touch% /tmp/pwned", "main")),
    ("ext transport, no space", spec_for("ext::sh", "main")),
    ("ssh URL", spec_for("ssh://git@example.org/r.git", "main")),
    ("scp-like ssh", spec_for("git@example.org:r.git", "main")),
    ("credentials", spec_for("https://user:secret@example.org/r.git", "main")),
    ("user name", spec_for("https://user@example.org/r.git", "main")),
    ("no host", spec_for("https:///r.git", "main")),
    ("option-like host", spec_for("http://-oProxyCommand=x/r.git", "main")),
    ("bad port", spec_for("http://example.org:99999/r.git", "main")),
    ("bad IPv6", spec_for("http://[::1/r.git", "main")),
    ("relative path", spec_for("../r.git", "main")),
]


@pytest.mark.parametrize("why, spec", BAD, ids=[why for why, _ in BAD])
def test_refused(config, why, spec):
    with pytest.raises(SpecError) as err:
        GitProvider(spec, config)
    assert err.value.status_code == 400
    assert "secret" not in err.value.message


def test_file_urls_only_when_allowed(make_config, bare_repo):
    spec = spec_for(bare_repo.path.as_uri(), "main")
    with pytest.raises(SpecError, match=r"must start with one of http://, https://, git://$"):
        GitProvider(spec, make_config())
    assert GitProvider(spec, make_config(allow_file_urls=True)).allowed_schemes()[-1] == "file"
    with pytest.raises(SpecError, match="file:///absolute/path"):
        GitProvider(spec_for("file://otherhost/srv/r.git", "main"), make_config(allow_file_urls=True))


# --- choosing the sha -----------------------------------------------------------------------------

LISTING = "\n".join([
    "1" * 40 + "\tHEAD",
    "2" * 40 + "\trefs/heads/main",
    "3" * 40 + "\trefs/remotes/origin/main",
    "4" * 40 + "\trefs/tags/v1",
    "5" * 40 + "\trefs/tags/v1^{}",
    "6" * 40 + "\trefs/tags/main",
    "7" * 40 + "\trefs/heads/x/HEAD",
    "8" * 40 + "\trefs/pull/1/head",
])


@pytest.mark.parametrize("ref, sha", [
    ("HEAD", "1"), ("main", "2"), ("v1", "5"), ("refs/tags/v1", "5"), ("refs/heads/main", "2"),
    ("refs/pull/1/head", "8"), ("origin/main", None), ("head", None), ("1/head", None),
])
def test_pick_sha(ref, sha):
    assert pick_sha(LISTING, ref) == (sha * 40 if sha else None)


# --- real resolution ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smart_http(bare_repo):
    """The real ``git http-backend`` (smart HTTP) on loopback serving the same repository."""
    with SmartGitServer(bare_repo.base) as server:
        yield server.url


@pytest.fixture(params=["file", "git-daemon", "dumb-http", "smart-http"])
def remote(request, make_config, bare_repo):
    """(url, config) of the same bare repository over each transport."""
    if request.param == "file":
        return bare_repo.path.as_uri(), make_config(allow_file_urls=True, provider_timeout=20)
    if request.param == "smart-http":
        return f"{request.getfixturevalue('smart_http')}/{bare_repo.name}", make_config(provider_timeout=20)
    base = request.getfixturevalue("git_daemon" if request.param == "git-daemon" else "dumb_http")
    return f"{base}/{bare_repo.name}", make_config(provider_timeout=20)


@pytest.mark.parametrize("ref, expected", [
    ("main", "c3"), ("HEAD", "c3"), ("feature/x", "c1"), ("v-light", "c1"),
    ("v1.0", "c2"), ("refs/tags/v1.0", "c2"), ("dup", "c2"), ("refs/tags/dup", "c0"),
    ("refs/pull/1/head", "c0"),
])
def test_resolve(remote, bare_repo, ref, expected):
    url, config = remote
    sha = GitProvider(spec_for(url, ref), config).resolve().ref
    assert sha == bare_repo.shas[expected]
    assert sha != bare_repo.shas["v1.0-object"]


def test_missing_ref_is_not_found(remote):
    url, config = remote
    with pytest.raises(NotFound, match=f"ref no-such-branch not found in {url}") as err:
        GitProvider(spec_for(url, "no-such-branch"), config).resolve()
    assert err.value.status_code == 404


def test_missing_repository_is_provider_error(remote):
    url, config = remote
    with pytest.raises(ProviderError, match="could not reach"):
        GitProvider(spec_for(url.replace("repo.git", "missing.git"), "main"), config).resolve()


def test_full_sha_needs_no_network(config, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("git must not run for a full sha")
    monkeypatch.setattr(git_module.subprocess, "Popen", refuse)
    p = GitProvider(spec_for("http://127.0.0.1:1/x.git", "ABCDEF" + "0" * 34), config)
    assert p.resolve().ref == "abcdef" + "0" * 34


def test_runs_git_without_shell_with_safe_env(make_config, bare_repo, monkeypatch):
    seen = {}
    real = subprocess.Popen

    def spy(args, **kwargs):
        seen.update(kwargs, args=args)
        return real(args, **kwargs)
    monkeypatch.setattr(git_module.subprocess, "Popen", spy)
    url = bare_repo.path.as_uri()
    GitProvider(spec_for(url, "main"), make_config(allow_file_urls=True)).resolve()
    assert seen["args"] == ["git", "ls-remote", "--", url, "main", "main^{}"]
    assert not seen.get("shell")
    assert seen["env"]["GIT_TERMINAL_PROMPT"] == "0"
    assert seen["env"]["GIT_ALLOW_PROTOCOL"] == "http:https:git:file"
    with pytest.raises(ProviderError):
        GitProvider(spec_for("http://127.0.0.1:1/x.git", "main"), make_config()).resolve()
    assert seen["env"]["GIT_ALLOW_PROTOCOL"] == "http:https:git"


def test_unreachable_is_provider_error(config, closed_port):
    url = f"http://127.0.0.1:{closed_port}/x.git"
    with pytest.raises(ProviderError) as err:
        GitProvider(spec_for(url, "main"), config).resolve()
    assert err.value.status_code == 502
    assert err.value.message.startswith(f"could not reach {url}: ")
    assert "127.0.0.1" in err.value.message.split(": ", 1)[1]  # git's own last line


def test_silent_server_times_out(make_config):
    """A server that accepts but never answers: git and its http helper are ended at the timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/x.git"
        started = time.monotonic()
        with pytest.raises(ProviderError, match="no answer within 1"):
            GitProvider(spec_for(url, "main"), make_config(provider_timeout=1)).resolve()
        assert time.monotonic() - started < 5
