"""SoftwareHeritageProvider: a SWHID is its own immutable ref; nothing is asked over the network."""

from __future__ import annotations

import pytest

from app.errors import SpecError
from providers.base import image_name
from providers.swh import SoftwareHeritageProvider

HEX = "94a9ed024d3859793618152ea559a168bbcbb5e2"


@pytest.mark.parametrize("kind", ["rev", "dir"])
def test_id_is_the_ref(make_config, kind):
    p = SoftwareHeritageProvider(f"swh:1:{kind}:{HEX}", make_config(provider_timeout=1))
    assert p.resolve().ref == p.repo_url() == f"swh:1:{kind}:{HEX}"
    assert p.ref_url(p.resolve().ref) == f"https://archive.softwareheritage.org/swh:1:{kind}:{HEX}"
    tag = image_name("bindery-", p.build_slug(), p.resolve().ref).rsplit(":", 1)[1]
    assert tag == f"swh-1-{kind}-{HEX}", "a docker tag has no colons"


@pytest.mark.parametrize("spec", ["", "swh:1:cnt:" + HEX, "swh:1:rev:" + HEX[:-1], "swh:2:rev:" + HEX,
                                  "swh:1:rev:" + HEX + "x", "-swh:1:rev:" + HEX])
def test_bad_ids(make_config, spec):
    with pytest.raises(SpecError):
        SoftwareHeritageProvider(spec, make_config())
