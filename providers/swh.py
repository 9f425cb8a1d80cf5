"""Software Heritage: ``swh/swh:1:rev:<40 hex>`` or ``swh/swh:1:dir:<40 hex>``.

A SWHID names content by its hash, so it is its own resolved ref and nothing is
asked over the network; repo2docker's Software Heritage content provider fetches it.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, ClassVar

from app.errors import SpecError
from providers.base import RepoProvider, Resolution

_SWHID = re.compile(r"\Aswh:1:(rev|dir):[0-9a-f]{40}\Z")


class SoftwareHeritageProvider(RepoProvider):
    """A revision or directory archived by Software Heritage."""

    prefix: ClassVar[str] = "swh"
    name: ClassVar[str] = "Software Heritage"
    spec_pattern: ClassVar[str] = "swh:1:rev:<40 hex> or swh:1:dir:<40 hex>"
    url_regex: ClassVar[str] = (r"^(https?://archive\.softwareheritage\.org/(browse/)?)?"
                                r"(swh:1:(rev|dir):[0-9a-f]{40})(;[^/\s]*)?/?$")
    repo_label: ClassVar[str] = "Software Heritage identifier (SWHID)"
    repo_placeholder: ClassVar[str] = "swh:1:rev:" + "0" * 40
    ref_enabled: ClassVar[bool] = False

    def __init__(self, spec: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(spec, config, **kwargs)
        swhid = urllib.parse.unquote(spec).rstrip("/").lower()
        if not _SWHID.fullmatch(swhid):
            raise SpecError(f"Software Heritage spec {spec[:100]!r} must be a SWHID of a revision or "
                            "directory: swh:1:rev:<40 hex digits> or swh:1:dir:<40 hex digits>")
        self.swhid = swhid
        self.unresolved_ref = swhid

    def repo_url(self) -> str:
        return self.swhid

    def build_slug(self) -> str:
        return self.swhid.replace(":", "-")

    def ref_url(self, resolved_ref: str) -> str:
        return f"https://archive.softwareheritage.org/{self.swhid}"

    def resolved_spec(self, resolved_ref: str) -> str:
        return self.swhid

    def resolve(self) -> Resolution:
        """The identifier itself: it is immutable."""
        return self.resolution(self.swhid)
