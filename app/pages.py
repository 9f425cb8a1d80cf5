"""The pages people see: landing, loading (``/v2/<provider>/<spec>``), about, badges, legacy links."""

from __future__ import annotations

import logging
import urllib.parse
from importlib import metadata

import redis
from flask import Blueprint, current_app, make_response, redirect, render_template, request, send_from_directory
from flask.typing import ResponseReturnValue
from werkzeug.http import HTTP_STATUS_CODES

from app import build_tokens, request_limits
from app.auth import login_required
from app.errors import BinderyError
from app.health import VERSION
from app.hooks import hooks_enabled
from app.network_bans import check_client_allowed
from app.rawpath import raw_spec

log = logging.getLogger(__name__)

bp = Blueprint("pages", __name__)

BADGE_MAX_AGE = 86400


@bp.route("/")
@login_required
def index() -> ResponseReturnValue:
    settings = current_app.config["BINDERY"]
    push = {"hooks": hooks_enabled(settings), "api": bool(settings["prebuild_tokens"]),
            "tags": settings["webhook_tags"]}  # the share box's "Build on push" part (static/js/push_hooks.js)
    return render_template("index.html", push=push)


def _error_page(error: BinderyError) -> ResponseReturnValue:
    code = error.status_code
    return render_template("error.html", code=code, name=HTTP_STATUS_CODES.get(code, "Error"),
                           description=error.message), code


def _build_token(provider: str, spec: str) -> str | None:
    """The page's build token; without Redis the page still works, its launch is rate limited."""
    try:
        return build_tokens.issue(provider, spec)
    except redis.RedisError as exc:
        log.warning("could not issue a build token (%s)", type(exc).__name__)
        return None


@bp.route("/v2/<provider>/<path:spec>")
@login_required
def loading(provider: str, spec: str) -> ResponseReturnValue:
    spec = raw_spec(f"/v2/{provider}/", spec)
    try:
        request_limits.check_spec(spec)
        check_client_allowed()
    except BinderyError as error:
        return _error_page(error)
    response = make_response(render_template("loading.html", provider=provider, spec=spec,
                                             display=urllib.parse.unquote(spec),
                                             build_token=_build_token(provider, spec)))
    response.headers["Cache-Control"] = "no-store"  # the token is for this client, and expires
    return response


@bp.route("/about")
def about() -> ResponseReturnValue:
    return render_template("about.html", version=VERSION,
                           repo2docker=metadata.version("jupyter-repo2docker"),
                           message=current_app.config["BINDERY"]["about_message"])


@bp.route("/badge.svg")
@bp.route("/badge_logo.svg")
def badge() -> ResponseReturnValue:
    """The launch badges README files link to (as mybinder.org's ``/badge_logo.svg``)."""
    name = request.path.lstrip("/")
    return send_from_directory(current_app.static_folder or "static", f"img/{name}",
                               mimetype="image/svg+xml", max_age=BADGE_MAX_AGE)


@bp.route("/repo/<user>/<repo>", defaults={"path": ""}, strict_slashes=False)
@bp.route("/repo/<user>/<repo>/<path:path>")
def legacy_repo(user: str, repo: str, path: str) -> ResponseReturnValue:
    """BinderHub's first link form: the default branch of a GitHub repository, ``path`` as urlpath."""
    target = f"/v2/gh/{urllib.parse.quote(user, safe='')}/{urllib.parse.quote(repo, safe='')}/HEAD"
    if path.strip("/"):
        target += "?" + urllib.parse.urlencode({"urlpath": path.strip("/")})
    return redirect(target, 302)
