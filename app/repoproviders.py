"""``GET /api/repoproviders``: what the landing page needs to offer each enabled provider.

The list is built from the provider classes' own display config
(:meth:`providers.base.RepoProvider.display_config`), so a provider is described
once, next to its code.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from providers import enabled_providers

bp = Blueprint("repoproviders", __name__)


@bp.route("/api/repoproviders")
def repoproviders() -> ResponseReturnValue:
    config = current_app.config["BINDERY"]
    return jsonify([cls.display_config(config) for cls in enabled_providers(config)])
