"""HydroShare resources: ``hydroshare/<resource id or URL>`` (32 hex digits).

The resource's science metadata (``/hsapi/resource/<id>/scimeta/elements``) gives
its last modification; ``<id>.v<epoch>`` is the resolved ref, as in BinderHub.
"""

from __future__ import annotations

import re
import urllib.parse
from datetime import UTC, datetime
from typing import Any, ClassVar

from app.errors import ProviderError, SpecError
from providers.base import RepoProvider, Resolution, check_text
from providers.http import get_json

_RESOURCE = re.compile(r"([0-9a-f]{32})")


class HydroshareProvider(RepoProvider):
    """A HydroShare resource (instance: ``hydroshare_url``)."""

    prefix: ClassVar[str] = "hydroshare"
    name: ClassVar[str] = "HydroShare resource"
    spec_pattern: ClassVar[str] = "<resource id>"
    url_regex: ClassVar[str] = r"^https?://{host}/resource/([0-9a-f]{32})/?$"
    repo_label: ClassVar[str] = "HydroShare resource id or URL"
    repo_placeholder: ClassVar[str] = "b8f6eae9d89241cf8b5904033460af61"
    ref_enabled: ClassVar[bool] = False

    def __init__(self, spec: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(spec, config, **kwargs)
        text = check_text(urllib.parse.unquote(spec), "HydroShare resource")
        match = _RESOURCE.search(text)
        if not match:
            raise SpecError(f"HydroShare spec {spec[:100]!r} must hold a resource id (32 hex digits), "
                            "e.g. b8f6eae9d89241cf8b5904033460af61")
        self.resource_id = match.group(1)
        self.unresolved_ref = "HEAD"

    @classmethod
    def display_host(cls, config: dict[str, Any]) -> str:
        return urllib.parse.urlsplit(str(config["hydroshare_url"])).netloc

    def _base(self) -> str:
        return str(self.config["hydroshare_url"]).rstrip("/")

    def repo_url(self) -> str:
        """The resource page, which repo2docker's HydroShare content provider fetches."""
        return f"{self._base()}/resource/{self.resource_id}"

    def build_slug(self) -> str:
        """``hydroshare-<id>`` (:meth:`resolve` names the image ``hydroshare-<id>.v<epoch>``, as BinderHub does)."""
        return f"hydroshare-{self.resource_id}"

    def resolved_spec(self, resolved_ref: str) -> str:
        """HydroShare keeps no history: the resource itself."""
        return self.resource_id

    def resolve(self) -> Resolution:
        """``<id>.v<epoch of last modification>``."""
        url = f"{self._base()}/hsapi/resource/{self.resource_id}/scimeta/elements"
        body = get_json(self.session, url, {"Accept": "application/json"}, float(self.config["provider_timeout"]),
                        "HydroShare", f"HydroShare resource {self.resource_id} not found (or not public)")
        try:
            modified = next(item["start_date"] for item in body["dates"] if item["type"] == "modified")
            when = datetime.strptime(str(modified).split(".")[0].rstrip("Z")[:19], "%Y-%m-%dT%H:%M:%S")
        except (KeyError, TypeError, StopIteration, ValueError):
            raise ProviderError(f"the HydroShare API gave no modification date for {self.resource_id}") from None
        record = f"{self.resource_id}.v{int(when.replace(tzinfo=UTC).timestamp())}"
        return self.resolution(record, build_slug=f"hydroshare-{record}")
