"""CKAN datasets: ``ckan/<url-escaped dataset URL>`` (optionally ``?activity_id=<id>``).

The CKAN Action API next to the dataset (``<site>/api/3/action/``) says which
version to build: ``package_show``'s last modification (``v<epoch>``), or the
activity named in the URL (``a<activity id>``), checked with ``activity_show``.
"""

from __future__ import annotations

import re
import urllib.parse
from datetime import UTC, datetime
from typing import Any, ClassVar

from app import netguard
from app.errors import NotFound, ProviderError, SpecError
from providers.base import RepoProvider, Resolution, check_text
from providers.http import get_json_guarded

_DATASET = re.compile(r"\A(?P<site>.*)/dataset/(?P<id>[A-Za-z0-9_][A-Za-z0-9_-]{0,99})/?\Z")
_ACTIVITY = re.compile(r"\A[0-9a-fA-F-]{1,64}\Z")


class CKANProvider(RepoProvider):
    """A dataset on any CKAN site."""

    prefix: ClassVar[str] = "ckan"
    name: ClassVar[str] = "CKAN dataset"
    spec_pattern: ClassVar[str] = "<url-escaped dataset URL>"
    url_regex: ClassVar[str] = r"^https?://[^/\s]+(/[^/\s]+)*/dataset/([A-Za-z0-9_-]+)/?(\?activity_id=[0-9a-fA-F-]+)?$"
    repo_label: ClassVar[str] = "CKAN dataset URL"
    repo_placeholder: ClassVar[str] = "https://demo.ckan.org/dataset/sample-dataset-1"
    url_to_spec_repo: ClassVar[str] = "escaped-url"
    ref_enabled: ClassVar[bool] = False

    def __init__(self, spec: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(spec, config, **kwargs)
        url = check_text(urllib.parse.unquote(spec), "CKAN dataset URL")
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise SpecError("CKAN dataset URL is not a valid URL") from None
        match = _DATASET.match(parts.path)
        if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc or not match:
            raise SpecError(f"CKAN spec {spec[:100]!r} must be an escaped dataset URL such as "
                            "https%3A%2F%2Fdemo.ckan.org%2Fdataset%2Fsample-dataset-1")
        netguard.check_literal(parts.hostname, config, "CKAN site")
        activity = urllib.parse.parse_qs(parts.query).get("activity_id", [""])[0]
        if activity and not _ACTIVITY.fullmatch(activity):
            raise SpecError("CKAN activity_id must be a CKAN activity id (hex digits and '-')")
        self.site = f"{parts.scheme}://{parts.netloc}{match.group('site')}"
        self.dataset_id = match.group("id")
        self.activity_id = activity.lower()
        self.unresolved_ref = self.activity_id or "HEAD"

    def repo_url(self) -> str:
        """The dataset URL (with the activity), which repo2docker's CKAN content provider fetches."""
        url = f"{self.site}/dataset/{self.dataset_id}"
        return f"{url}?activity_id={self.activity_id}" if self.activity_id else url

    def build_slug(self) -> str:
        return f"ckan-{urllib.parse.urlsplit(self.site).netloc}-{self.dataset_id}"

    def resolved_spec(self, resolved_ref: str) -> str:
        return urllib.parse.quote(self.repo_url(), safe="")

    def _action(self, action: str, ident: str, not_found: str) -> Any:
        url = f"{self.site}/api/3/action/{action}?{urllib.parse.urlencode({'id': ident})}"
        # The site is user input: only public addresses, and no redirect to somewhere unchecked.
        body = get_json_guarded(self.session, url, self.config, "CKAN site", "CKAN", not_found)
        if not isinstance(body, dict) or body.get("success") is not True or not isinstance(body.get("result"), dict):
            raise ProviderError(f"the CKAN API at {urllib.parse.urlsplit(self.site).netloc} "
                                f"answered {action} without a result")
        return body["result"]

    def resolve(self) -> Resolution:
        """``a<activity id>`` when the URL names one, else ``v<epoch of last modification>``."""
        missing = f"CKAN dataset {self.dataset_id} not found at {self.site}"
        dataset = self._action("package_show", self.dataset_id, missing)
        if self.activity_id:
            activity = self._action("activity_show", self.activity_id,
                                    f"activity {self.activity_id} of CKAN dataset {self.dataset_id} not found")
            if activity.get("object_id") not in (dataset.get("id"), None):
                raise NotFound(f"activity {self.activity_id} is not an activity of CKAN dataset {self.dataset_id}")
            return self.resolution(f"a{self.activity_id}")
        try:
            when = datetime.strptime(str(dataset["metadata_modified"]).split(".")[0][:19], "%Y-%m-%dT%H:%M:%S")
        except (KeyError, ValueError):
            raise ProviderError(f"the CKAN API gave no modification time for {self.dataset_id}") from None
        return self.resolution(f"v{int(when.replace(tzinfo=UTC).timestamp())}")
