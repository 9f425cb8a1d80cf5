"""The pages people see: landing page and the loading page of ``/v2/<provider>/<spec>``."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from app.rawpath import raw_spec

bp = Blueprint("pages", __name__)


@bp.route("/")
def index() -> ResponseReturnValue:
    return render_template("index.html")


@bp.route("/v2/<provider>/<path:spec>")
def loading(provider: str, spec: str) -> ResponseReturnValue:
    return render_template("loading.html", provider=provider, spec=raw_spec(f"/v2/{provider}/", spec))
