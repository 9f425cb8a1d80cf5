"""Shared provider checks (check_safe, redaction, BinderHub-style image names) and the base class."""

from __future__ import annotations

import dataclasses
import hashlib
import re

import pytest
import requests

from app.errors import SpecError
from providers.base import RepoProvider, Resolution, check_safe, image_name, redact_text, redact_url, safe_build_slug
from providers.http import session as shared_session

# Docker's reference grammar (distribution/reference): [domain/]component(/component)*:tag
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
REFERENCE = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*:[\w][\w.-]{{0,127}}$")
SHA = "0123456789abcdef0123456789abcdef01234567"


def assert_valid_image(name: str) -> None:
    assert REFERENCE.match(name), name
    assert name == name.lower()
    assert len(name.rpartition(":")[0]) <= 255


@pytest.mark.parametrize("value", ["main", "v1.0", "feature/x", "refs/pull/1/head", "https://h/r.git", "a-b"])
def test_check_safe_accepts(value):
    assert check_safe(value, "ref") == value


@pytest.mark.parametrize("value", [
    "", "-x", "--upload-pack=touch x", "--upload-pack=touch", "a b", "a\tb", "a\nb", "main\n",
    "a\x00b", "a\x7fb", "a\x1bb",
])
def test_check_safe_refuses(value):
    with pytest.raises(SpecError) as err:
        check_safe(value, "ref")
    assert err.value.message.startswith("ref ")


@pytest.mark.parametrize("url, shown", [
    ("https://user:secret@example.org/r.git", "https://example.org/r.git"),
    ("https://token@example.org:8443/r.git?x=1", "https://example.org:8443/r.git?x=1"),
    ("https://example.org/r.git", "https://example.org/r.git"),
    ("git://127.0.0.1:9418/r.git", "git://127.0.0.1:9418/r.git"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_text():
    said = "fatal: unable to access 'https://user:tok3n@example.org/r.git/': 401 and git://a@b/c"
    assert redact_text(said) == "fatal: unable to access 'https://example.org/r.git/': 401 and git://b/c"


def test_image_name_like_binderhub():
    digest = hashlib.sha256(b"jupyterhub-binderhub").hexdigest()[:6]
    name = image_name("gcr.io/myproj/binder-", "jupyterhub-binderhub", SHA)
    assert name == f"gcr.io/myproj/binder-jupyterhub-2dbinderhub-{digest}:{SHA}"
    assert_valid_image(name)


@pytest.mark.parametrize("slug", [
    "user-repo_", "_", "JupyterHub-BinderHub", "https://gitlab.com/group/sub/project.git",
    "group-sub-project", "a__b..c--d", "ünïcode-repo",
])
@pytest.mark.parametrize("prefix", ["gcr.io/myproj/binder-", "127.0.0.1:5000/bindery-", "bindery-", "r2d_"])
def test_image_names_are_valid(prefix, slug):
    name = image_name(prefix, slug, SHA)
    assert_valid_image(name)
    assert name.endswith(f"-{hashlib.sha256(slug.encode()).hexdigest()[:6]}:{SHA}")


@pytest.mark.parametrize("prefix", ["gcr.io/myproj/binder-", "bindery-"])
def test_long_names_are_truncated_keeping_the_hash(prefix):
    slug = "https://example.org/" + "very-long-name/" * 40 + "repo.git"
    name = image_name(prefix, slug, SHA)
    assert_valid_image(name)
    repository = name.rpartition(":")[0]
    assert len(repository) == 255
    assert repository.endswith("-" + hashlib.sha256(slug.encode()).hexdigest()[:6])


def test_safe_build_slug_is_unique_per_slug():
    assert safe_build_slug("a/b", 63) != safe_build_slug("a-b", 63)
    assert len(safe_build_slug("x" * 500, 63)) == 63


# --- Resolution and copies --------------------------------------------------------------------------

class _Counted(RepoProvider):
    """A provider whose every resolve gives the next ref, with a notice on the first."""

    prefix = "counted"

    def __init__(self, spec, config, **kwargs):
        super().__init__(spec, config, **kwargs)
        self.answers = iter(["a" * 40, "b" * 40])

    def repo_url(self):
        return f"https://example.org/{self.spec}"

    def build_slug(self):
        return self.spec

    def resolved_spec(self, resolved_ref):
        return f"{self.spec}/{resolved_ref}"

    def resolve(self):
        ref = next(self.answers)
        return self.resolution(ref, notice="first" if ref.startswith("a") else None)


def test_resolution_takes_the_parsed_facts_unless_told_otherwise():
    p = _Counted("r", {})
    assert p.resolution("c" * 40) == Resolution(ref="c" * 40, build_slug="r", resolved_spec=f"r/{'c' * 40}",
                                                ref_url="https://example.org/r")
    assert p.resolution("c", build_slug="x", notice="n").build_slug == "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.resolution("c").ref = "d"  # type: ignore[misc]


def test_resolve_returns_what_it_found_and_leaves_the_provider_alone():
    parsed = _Counted("r", {})
    before = dict(vars(parsed))
    first, second = parsed.resolve(), parsed.resolve()
    assert (first.ref, first.notice) == ("a" * 40, "first")
    assert (second.ref, second.notice) == ("b" * 40, None), "a later answer has its own notice, or none"
    assert vars(parsed) == before
    assert vars(parsed.copy()) == vars(parsed) and parsed.copy() is not parsed


def test_the_session_is_the_shared_one_unless_given():
    given = requests.Session()
    try:
        assert _Counted("r", {}, session=given).session is given
        assert _Counted("r", {}).session is shared_session()
        assert _Counted("r", {}, session=given).copy().session is given
    finally:
        given.close()
