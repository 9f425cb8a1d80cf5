"""Generated specs never crash a provider, and whatever parses is safe to hand to git or an API.

Parsing only (no network), so 10,000 examples per provider stay fast.
"""

from __future__ import annotations

import unicodedata
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import load_config
from app.errors import NotFound, SpecError
from providers import get_provider

CONFIGS = {allow: load_config({"allow_file_urls": allow}, environ={}) for allow in (False, True)}

PIECES = st.sampled_from([
    "a", "Z", "0", "9", "-", "--", "_", ".", "..", "/", "%", "%2F", "%2f", "%20", "%00", "%0A", "%2D", "%25",
    ":", "://", "%3A%2F%2F", "@", "user:pw@", " ", "\t", "\n", "\x00", "\x7f", "\u00a0", "\u202e", "\ud800",
    "~", "^{}", "*", "?", "[", "\\", "=", ".git", "HEAD", "main", "é", "--upload-pack=touch x",
])
FRAGMENT = st.one_of(st.lists(PIECES, max_size=12).map("".join), st.text(max_size=20))
SCHEMES = st.sampled_from([
    "", "https%3A%2F%2F", "http%3A%2F%2F", "git%3A%2F%2F", "file%3A%2F%2F%2F", "ssh%3A%2F%2F", "ext%3A%3A",
    "https://", "HTTPS%3A%2F%2F", "-", "%2D%2D",
])
HOSTS = st.sampled_from(["", "example.org", "127.0.0.1%3A9418", "%5B%3A%3A1", "h%3A99999", "-h", "u%3Ap%40h"])
NAME = st.text(alphabet="abcXYZ019-_.", min_size=1, max_size=8)
USERS = st.one_of(NAME, FRAGMENT)
REFS = st.one_of(st.text(alphabet="abcXYZ019-_./%", min_size=1, max_size=12), FRAGMENT)
NAMESPACES = st.lists(st.one_of(NAME, FRAGMENT), min_size=1, max_size=4).map("%2F".join)

STRUCTURED = {
    "git": st.builds(lambda s, h, p, r: f"{s}{h}{p}/{r}", SCHEMES, HOSTS, REFS, REFS),
    "gh": st.builds(lambda u, r, f: f"{u}/{r}/{f}", USERS, USERS, REFS),
    "gl": st.builds(lambda n, r: f"{n}/{r}", NAMESPACES, REFS),
}
# Any text at all, but mostly specs shaped like the real thing so many of them parse.
SPECS = {prefix: st.one_of(st.text(max_size=60), shaped, shaped, shaped)
         for prefix, shaped in STRUCTURED.items()}


def assert_clean(value: str) -> None:
    assert value and not value.startswith("-"), value
    assert not any(unicodedata.category(ch)[0] in "CZ" for ch in value), value


def parts_of(provider) -> list[str]:
    if provider.prefix == "git":
        scheme = urllib.parse.urlsplit(provider.url).scheme
        assert scheme in provider.allowed_schemes()
        assert "@" not in urllib.parse.urlsplit(provider.url).netloc
        return [provider.url]
    if provider.prefix == "gh":
        return [provider.user, provider.repo, provider.repo_url()]
    return [provider.namespace, *provider.namespace.split("/"), provider.repo_url()]


@pytest.mark.parametrize("prefix", sorted(SPECS))
def test_specs_parse_safely_or_fail_cleanly(prefix):
    @settings(max_examples=10_000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(spec=SPECS[prefix], allow_file=st.booleans())
    def check(spec: str, allow_file: bool) -> None:
        try:
            provider = get_provider(prefix, spec, CONFIGS[allow_file])
        except (SpecError, NotFound) as err:
            assert err.message
            return
        for value in [provider.unresolved_ref, *parts_of(provider)]:
            assert_clean(value)
        if provider.prefix != "git":
            assert provider.unresolved_ref not in (".", "..")
    check()
