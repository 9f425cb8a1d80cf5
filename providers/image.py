"""Prebuilt images: ``image/<registry>/<name>:<tag>`` (or ``@sha256:<digest>``), launched without a build.

Off by default: the operator must list ``image`` in ``enabled_providers`` and give
``allowed_specs`` patterns for it, because a launch runs whatever the image holds.
The tag (or digest) is the resolved ref; the pipeline checks the registry and
launches the image as named, or fails with 404 when it is not there.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from app.errors import SpecError
from providers.base import RepoProvider, Resolution, check_text

_HOST = r"(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?|localhost:[0-9]{1,5}"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"\A(?:(?P<host>{_HOST})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?\Z"
)


class ImageProvider(RepoProvider):
    """An image already in a registry; no repository, no build."""

    prefix: ClassVar[str] = "image"
    name: ClassVar[str] = "Container image"
    spec_pattern: ClassVar[str] = "<registry>/<name>:<tag>"
    url_regex: ClassVar[str] = (r"^(([A-Za-z0-9-]+\.)+[A-Za-z0-9-]+(:[0-9]+)?/)?[a-z0-9._/-]+"
                                r"(:[A-Za-z0-9_][A-Za-z0-9_.-]*|@sha256:[0-9a-f]{64})$")
    repo_label: ClassVar[str] = "Image name with registry and tag"
    repo_placeholder: ClassVar[str] = "quay.io/jupyter/base-notebook:2024-07-08"
    ref_enabled: ClassVar[bool] = False
    enabled_by_default: ClassVar[bool] = False
    needs_allow: ClassVar[bool] = True

    def __init__(self, spec: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(spec, config, **kwargs)
        check_text(spec, "image name")
        match = _REFERENCE.fullmatch(spec) if len(spec) <= 512 else None
        if not match or not (match.group("tag") or match.group("digest")):
            raise SpecError(f"image spec {spec[:100]!r} must be <registry>/<name>:<tag> or "
                            "<registry>/<name>@sha256:<digest>, e.g. quay.io/jupyter/base-notebook:2024-07-08")
        self.host = match.group("host") or ""
        self.path = match.group("path")
        self.tag = match.group("tag") or ""
        self.digest = match.group("digest") or ""
        self.name_only = f"{self.host}/{self.path}" if self.host else self.path
        self.unresolved_ref = self.digest or self.tag

    def repo_url(self) -> str:
        """The image reference (shown, and counted for the per-repository quota)."""
        return self.spec

    def build_slug(self) -> str:
        return self.name_only

    def resolved_spec(self, resolved_ref: str) -> str:
        return self.spec

    def resolve(self) -> Resolution:
        """The digest when pinned, else the tag: nothing to ask."""
        return self.resolution(self.digest or self.tag)

    def prebuilt_image(self) -> str:
        """The image to launch, exactly as named."""
        return self.spec
