"""Generated specs never crash a provider, and whatever parses is safe to hand to git or an API.

Parsing only (no network).  The issue asks for 10,000 generated specs per provider.
Hypothesis spends ~1 ms of its own per example on these strategies (generation
dominates; parsing costs ~0.02 ms), so each example is a batch of BATCH specs:
1,000 examples x 10 specs = 10,000 specs per provider, counted and asserted, in
about a third of the time (a failing batch still shrinks to the one bad spec).
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
from tasks.backends.docker_builder import repo2docker_command

SPECS_PER_PROVIDER = 10_000
BATCH = 10
EXAMPLES = SPECS_PER_PROVIDER // BATCH
_ALL = ["gh", "gist", "gl", "git", "zenodo", "figshare", "hydroshare", "dataverse", "ckan", "swh", "image"]
# Every provider on; the image provider allows everything, so parsing is what is tested.
CONFIGS = {allow: load_config({"allow_file_urls": allow, "enabled_providers": _ALL,
                               "allowed_specs": {"image": [".*"]}}, environ={}) for allow in (False, True)}

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

HEX = st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=44)
# ...and of the lengths identifiers have (40: git/swh, 32: HydroShare), so that enough specs parse
IDS = st.one_of(HEX, *(st.text(alphabet="0123456789abcdef", min_size=n, max_size=n) for n in (32, 40)))
DOI_PREFIX = st.sampled_from(["", "doi:", "https%3A%2F%2Fdoi.org%2F", "https://doi.org/", "10.", "10.5281/", "-"])
DOIS = st.builds(lambda p, a, b: f"{p}{a}/{b}", DOI_PREFIX, st.one_of(st.just("10.5281"), FRAGMENT),
                 st.one_of(st.lists(st.one_of(NAME, FRAGMENT), min_size=1, max_size=3).map("/".join)))
SWH_KIND = st.sampled_from(["rev", "dir", "cnt", "REV", "", "rev:"])
IMAGE_HOST = st.sampled_from(["", "quay.io/", "127.0.0.1:5055/", "localhost/", "[::1]:5000/", "-h/", "a..b/", "Q.io/"])
TAGS = st.one_of(st.sampled_from([":latest", ":1.0", ":-x", "@sha256:" + "a" * 64, "@sha256:x", ""]),
                 FRAGMENT.map(lambda f: ":" + f))
STRUCTURED = {
    "git": st.builds(lambda s, h, p, r: f"{s}{h}{p}/{r}", SCHEMES, HOSTS, REFS, REFS),
    "gh": st.builds(lambda u, r, f: f"{u}/{r}/{f}", USERS, USERS, REFS),
    "gl": st.builds(lambda n, r: f"{n}/{r}", st.one_of(NAMESPACES, st.lists(NAME, min_size=2, max_size=3).map(
        "%2F".join)), REFS),
    "gist": st.builds(lambda u, g, r: f"{u}/{g}/{r}", USERS, st.one_of(HEX, FRAGMENT), REFS),
    "zenodo": DOIS,
    "figshare": DOIS,
    "dataverse": DOIS,
    "hydroshare": st.builds(lambda a, h, b: f"{a}{h}{b}", st.one_of(st.just(""), FRAGMENT), IDS,
                            st.one_of(st.just(""), FRAGMENT)),
    "ckan": st.builds(lambda s, h, p, d, q: f"{s}{h}{p}%2Fdataset%2F{d}{q}", SCHEMES, HOSTS,
                      st.one_of(st.just(""), FRAGMENT),
                      st.one_of(NAME, FRAGMENT), st.sampled_from(["", "%3Factivity_id%3Dab-12", "?activity_id=-x"])),
    "swh": st.builds(lambda k, h: f"swh:1:{k}:{h}", SWH_KIND, IDS),
    "image": st.builds(lambda h, n, t: f"{h}{n}{t}", IMAGE_HOST,
                       st.lists(st.one_of(NAME, FRAGMENT), min_size=1, max_size=3).map("/".join), TAGS),
}
# Any text at all, but mostly specs shaped like the real thing so many of them parse.
SPECS = {prefix: st.one_of(st.text(max_size=60), shaped, shaped, shaped)
         for prefix, shaped in STRUCTURED.items()}


def assert_clean(value: str) -> None:
    assert value and not value.startswith("-"), value
    assert not any(unicodedata.category(ch)[0] in "CZ" for ch in value), value


def parts_of(provider) -> list[str]:
    """What of the provider may reach a command line (repo2docker's argument, git's URL) or an API path."""
    if provider.prefix == "git":
        scheme = urllib.parse.urlsplit(provider.url).scheme
        assert scheme in provider.allowed_schemes()
        assert "@" not in urllib.parse.urlsplit(provider.url).netloc
        return [provider.url]
    if provider.prefix == "gh":
        return [provider.user, provider.repo, provider.repo_url()]
    if provider.prefix == "gl":
        return [provider.namespace, *provider.namespace.split("/"), provider.repo_url()]
    if provider.prefix == "gist":
        return [provider.user, provider.gist_id, provider.repo_url()]
    if provider.prefix == "ckan":
        assert "@" not in urllib.parse.urlsplit(provider.repo_url()).netloc
        return [provider.dataset_id, provider.repo_url()]
    if provider.prefix == "image":
        return [provider.prebuilt_image(), provider.repo_url()]
    return [provider.repo_url(), provider.build_slug()]


def command_lines(provider) -> list[list[str]]:
    """The argument lists a parsed spec leads to: repo2docker's, and git ls-remote's for the git provider."""
    launch = {"resolved_ref": provider.unresolved_ref, "image": "127.0.0.1:5055/x:y"}
    lines = [repo2docker_command(CONFIGS[False], provider, launch, "/tmp/repo2docker_config.py")]
    if provider.prefix == "git":
        lines.append(["git", *provider.ls_remote_args(provider.unresolved_ref)])
    return lines


def check_spec(prefix: str, spec: str, config: dict) -> bool:
    """True when the spec parsed (and everything checked holds), False when it was refused cleanly."""
    try:
        provider = get_provider(prefix, spec, config)
    except (SpecError, NotFound) as err:
        assert err.message
        return False
    for value in [provider.unresolved_ref, *parts_of(provider)]:
        assert_clean(value)
    if provider.prefix != "git":
        assert provider.unresolved_ref not in (".", "..")
    for argv in command_lines(provider):  # what reaches a command line: every user value after "--"
        user_values = argv[argv.index("--") + 1:]
        if "--ref" in argv:
            user_values.append(argv[argv.index("--ref") + 1])
        for value in user_values:
            assert_clean(value)
    entry = provider.display_config(config)
    assert entry["id"] == prefix
    return True


@pytest.mark.parametrize("prefix", sorted(SPECS))
def test_specs_parse_safely_or_fail_cleanly(prefix):
    seen = {"specs": 0, "parsed": 0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(specs=st.lists(SPECS[prefix], min_size=BATCH, max_size=BATCH), allow_file=st.booleans())
    def check(specs: list[str], allow_file: bool) -> None:
        for spec in specs:
            seen["parsed"] += check_spec(prefix, spec, CONFIGS[allow_file])
        seen["specs"] += len(specs)
    check()
    assert seen["specs"] >= SPECS_PER_PROVIDER, seen
    assert seen["parsed"] >= SPECS_PER_PROVIDER // 400, f"too few specs parse to test anything: {seen}"
