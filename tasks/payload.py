"""The launch payload every chain step receives and returns, declared once."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate


class LaunchSchema(Schema):
    """What is known about one launch request; steps fill in the optional fields."""

    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{32}$"))
    provider = fields.String(required=True)
    spec = fields.String(required=True)
    build_only = fields.Boolean(load_default=False)
    origin = fields.String(load_default="")
    created = fields.Float(required=True, metadata={"help": "time.time() when the request arrived"})
    repo_url = fields.String(load_default=None, allow_none=True)
    ref_url = fields.String(load_default=None, allow_none=True)
    resolved_ref = fields.String(load_default=None, allow_none=True)
    image = fields.String(load_default=None, allow_none=True)
    build_id = fields.String(load_default=None, allow_none=True)


def load_launch(payload: dict[str, Any]) -> dict[str, Any]:
    return LaunchSchema().load(payload)
