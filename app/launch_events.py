"""Launch events in BinderHub's launch schema, for analytics ("how often was repo X launched").

Each successful (or failed) launch emits one record, validated by a marshmallow
schema, to the sinks in ``launch_event_sinks``: a JSON-lines file, stdout,
and/or a Redis stream.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from marshmallow import Schema, fields, validate

from app import keys

SCHEMA = "binderhub.jupyter.org/launch"
VERSION = 6
REDIS_STREAM = keys.LAUNCH_EVENTS()
PROVIDER_NAMES = {
    "gh": "GitHub", "gist": "Gist", "gl": "GitLab", "git": "Git", "zenodo": "Zenodo",
    "figshare": "Figshare", "hydroshare": "Hydroshare", "dataverse": "Dataverse", "ckan": "CKAN",
    "swh": "SWHID", "image": "Image",
}
#: What may start a launch: a click (a link, /build), a push (a webhook), an API call (/api/prebuild).
TRIGGERS = ("click", "push", "api")
_file_lock = threading.Lock()


class LaunchEventSchema(Schema):
    schema = fields.String(required=True, validate=validate.Equal(SCHEMA))
    version = fields.Integer(required=True, validate=validate.Equal(VERSION))
    timestamp = fields.String(required=True, metadata={"help": "ISO 8601, UTC"})
    provider = fields.String(required=True, validate=validate.OneOf(sorted(set(PROVIDER_NAMES.values()))))
    spec = fields.String(required=True)
    ref = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["success", "failure"]))
    build_token = fields.Boolean(load_default=False)
    origin = fields.String(required=True, metadata={"help": "the Bindery host that served the launch"})
    request_origin = fields.String(load_default="", metadata={"help": "the requesting page's Origin header, "
                                                                      "else Sec-Fetch-Site, else empty"})
    pool = fields.String(validate=validate.OneOf(["hit", "miss"]),
                         metadata={"help": "present when the image has a warm pool: the launch got a pooled "
                                           "server (hit) or started one (miss)"})
    trigger = fields.String(validate=validate.OneOf(TRIGGERS),
                            metadata={"help": "what started the launch: click, or push/api for a build-only "
                                              "launch that built (or found) the commit's image before anyone "
                                              "clicked (docs/build-on-push.md)"})
    authenticated = fields.Boolean(metadata={"help": "present (true) when the launch was for a logged-in user "
                                                     "(auth_enabled); never who"})


_SCHEMA = LaunchEventSchema()  # one per process: making a Schema costs more than a load


def make_event(launch: dict[str, Any], status: str) -> dict[str, Any]:
    """A validated event for a launch payload (raises ValidationError on a bad one)."""
    origin = (launch.get("origin") or "").split("://", 1)[-1].rstrip("/")
    event = {
        "schema": SCHEMA, "version": VERSION,
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
        "provider": PROVIDER_NAMES.get(launch["provider"], "Git"), "spec": launch["spec"],
        "ref": launch.get("resolved_ref") or "", "status": status, "origin": origin,
        "request_origin": launch.get("request_origin") or "",
    }
    if launch.get("user"):
        event["authenticated"] = True
    if launch.get("pool"):
        event["pool"] = launch["pool"]
    event["trigger"] = launch.get("trigger") or "click"
    return _SCHEMA.load(event)


def event_file(config: dict[str, Any]) -> Path:
    return Path(config["launch_event_file"] or os.path.join(config["data_dir"], "launch-events.jsonl"))


def emit(config: dict[str, Any], event: dict[str, Any], redis_client: Any = None) -> None:
    line = json.dumps(event, sort_keys=True)
    sinks = config["launch_event_sinks"]
    if "file" in sinks:
        path = event_file(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock, open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    if "stdout" in sinks:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    if "redis" in sinks and redis_client is not None:
        redis_client.xadd(REDIS_STREAM, {"event": line}, maxlen=1_000_000, approximate=True)


def read_file(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def count_launches(events: Iterable[dict[str, Any]], repo: str, days: float,
                   now: datetime.datetime | None = None) -> int:
    """Successful launches of ``repo`` (a spec prefix such as ``gh/org/repo``) in the last ``days``."""
    now = now or datetime.datetime.now(datetime.UTC)
    since = now - datetime.timedelta(days=days)
    wanted = repo.strip("/").lower()
    total = 0
    for event in events:
        prefix = next((k for k, v in PROVIDER_NAMES.items() if v == event.get("provider")), "")
        name = f"{prefix}/{event.get('spec', '')}".lower()
        clicked = event.get("trigger", "click") == "click"  # a push's build launched nothing
        if event.get("status") == "success" and clicked and (name == wanted or name.startswith(wanted + "/")) \
                and datetime.datetime.fromisoformat(event["timestamp"]) >= since:
            total += 1
    return total
