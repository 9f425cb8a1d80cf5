"""The operator's per-provider rules on specs, with BinderHub's semantics.

Patterns are case-insensitive regexes matched at the start of the unresolved spec
(``re.match``), because most hosts treat ``DS-100/textbook`` and ``ds-100/textbook``
as one repository.  ``banned_specs`` and ``allowed_specs`` are checked when the spec
is parsed, so the web refuses a banned spec before anything is queued;
``high_quota_specs`` and ``spec_config`` give the quota a launch gets.
"""

from __future__ import annotations

import re
from typing import Any

from app.errors import Banned


def _matches(patterns: list[str], spec: str) -> bool:
    return any(re.match(pattern, spec, re.IGNORECASE) for pattern in patterns)


def check_allowed(prefix: str, spec: str, config: dict[str, Any], *, needs_allow: bool = False) -> None:
    """Raise :class:`Banned` (403) when the operator refuses this spec.

    ``needs_allow``: the provider serves only what ``allowed_specs`` lists (the
    ``image`` provider), so an empty list refuses everything.
    """
    allowed = (config.get("allowed_specs") or {}).get(prefix) or []
    if (allowed or needs_allow) and not _matches(allowed, spec):
        raise Banned(f"{prefix}/{spec[:200]} is not among the specs this Bindery allows "
                     f"for the {prefix} provider.")
    if _matches((config.get("banned_specs") or {}).get(prefix) or [], spec):
        raise Banned(f"{prefix}/{spec[:200]} has been banned from this Bindery. "
                     "If you think this is a mistake, contact its operators.")


def spec_settings(prefix: str, spec: str, config: dict[str, Any]) -> dict[str, Any]:
    """BinderHub's ``repo_config``: the quota, then every matching ``spec_config`` entry in order."""
    high = _matches((config.get("high_quota_specs") or {}).get(prefix) or [], spec)
    settings: dict[str, Any] = {"quota": config["high_quota_per_repo"] if high else config["quota_per_repo"]}
    spec_config = config.get("spec_config") or {}
    for item in [*spec_config.get("*", []), *spec_config.get(prefix, [])]:
        if re.match(item["pattern"], spec, re.IGNORECASE):
            settings.update(item["config"])
    return settings


def quota_for(prefix: str, spec: str, config: dict[str, Any]) -> int:
    """Servers of this repository that may run at once (0: no limit)."""
    return int(spec_settings(prefix, spec, config)["quota"])
