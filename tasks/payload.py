"""The launch payload every chain step receives and returns, declared once."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from app.launch_events import TRIGGERS


class LaunchSchema(Schema):
    """What is known about one launch request; steps fill in the optional fields."""

    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{32}$"))
    provider = fields.String(required=True)
    spec = fields.String(required=True)
    build_only = fields.Boolean(load_default=False)
    origin = fields.String(load_default="")
    request_origin = fields.String(load_default="", metadata={"help": "the page's Origin header (launch events)"})
    created = fields.Float(required=True, metadata={"help": "time.time() when the request arrived"})
    repo_url = fields.String(load_default=None, allow_none=True)
    ref_url = fields.String(load_default=None, allow_none=True)
    resolved_ref = fields.String(load_default=None, allow_none=True)
    resolved_spec = fields.String(load_default=None, allow_none=True,
                                  metadata={"help": "the spec with the ref resolved (the persistent link's), "
                                                    "so later steps need not parse the spec again"})
    image = fields.String(load_default=None, allow_none=True)
    build_id = fields.String(load_default=None, allow_none=True)
    quota = fields.Integer(load_default=None, allow_none=True,
                           metadata={"help": "servers of this repository that may run at once (0: no limit); "
                                             "from quota_per_repo, high_quota_specs and spec_config"})
    user = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(r"\A[^/\x00-\x1f\x7f]{1,255}\Z"),
                         metadata={"help": "the logged-in JupyterHub user the server is for (auth_enabled); "
                                           "None: an anonymous launch"})
    log_path = fields.String(load_default=None, allow_none=True,
                             metadata={"help": "where this image's build log is served"})
    trigger = fields.String(load_default="click", validate=validate.OneOf(TRIGGERS),
                            metadata={"help": "what asked for the launch: a click (a link, /build), a push "
                                              "(a webhook) or an api call (/api/prebuild); metrics and launch "
                                              "events count builds by it"})
    pool_specs = fields.List(fields.String(), load_default=list,
                             metadata={"help": "the links (provider/spec) a pushed commit is now the image of: "
                                               "their warm pools follow it when the build is done"})


#: One schema for the process: making a marshmallow Schema deep-copies its fields, which cost more
#: than loading a payload with it (load keeps no state on the instance, so greenlets may share it).
_SCHEMA = LaunchSchema()


def load_launch(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload of a message, checked and with its defaults filled in (once per message)."""
    return _SCHEMA.load(payload)
