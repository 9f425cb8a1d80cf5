"""Shared provider checks: check_safe, redact_url and BinderHub-style image names."""

from __future__ import annotations

import hashlib
import re

import pytest

from app.errors import SpecError
from providers.base import check_safe, image_name, redact_url, safe_build_slug

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
