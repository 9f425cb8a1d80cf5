"""ImageProvider: parsing image references, and that it is off unless the operator allows it."""

from __future__ import annotations

import pytest

from app.errors import Banned, NotFound, SpecError
from providers import get_provider
from providers.image import ImageProvider

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("spec, ref", [
    ("127.0.0.1:5055/bindery/jupyter:bookworm", "bookworm"),
    ("quay.io/jupyter/base-notebook:2024-07-08", "2024-07-08"),
    (f"ghcr.io/org/img@{DIGEST}", DIGEST),
    ("ubuntu:22.04", "22.04"),
])
def test_parse(make_config, spec, ref):
    p = ImageProvider(spec, make_config())
    assert p.resolve().ref == ref
    assert p.prebuilt_image() == spec == p.repo_url()


@pytest.mark.parametrize("spec", ["", "quay.io/jupyter/base-notebook", "-x:1", "Upper/case:1", "a b:1",
                                  "quay.io/x:-tag", "x:1\n", "quay.io//x:1"])
def test_bad_specs(make_config, spec):
    with pytest.raises(SpecError):
        ImageProvider(spec, make_config())


def test_off_unless_enabled_and_allowed(make_config):
    spec = "quay.io/jupyter/base-notebook:2024-07-08"
    with pytest.raises(NotFound, match="unknown provider 'image'"):
        get_provider("image", spec, make_config())
    enabled = [*make_config()["enabled_providers"], "image"]
    with pytest.raises(Banned, match="not among the specs"):
        get_provider("image", spec, make_config(enabled_providers=enabled))
    with pytest.raises(Banned):
        get_provider("image", spec, make_config(enabled_providers=enabled, allowed_specs={"image": ["^ghcr\\.io/"]}))
    allowed = make_config(enabled_providers=enabled, allowed_specs={"image": ["^quay\\.io/jupyter/"]})
    assert get_provider("image", spec, allowed).prebuilt_image() == spec
