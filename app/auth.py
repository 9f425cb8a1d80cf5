"""Authenticated Bindery: users log in through JupyterHub's OAuth; the session is a signed cookie.

With ``auth_enabled`` Bindery is an OAuth client of the hub, through the hub's own
service OAuth (as BinderHub with auth_enabled).  A browser without a session is sent
to the hub's ``/hub/api/oauth2/authorize`` with a random ``state`` and a PKCE
challenge kept in its session cookie; the hub logs the user in (with whatever
authenticator it has) and sends the browser to ``/oauth_callback`` with a code and
that state.  The state must match (once, within ``STATE_MAX_AGE``); the code is
exchanged at ``/hub/api/oauth2/token`` and the token used once, to ask
``/hub/api/user`` who logged in.  The session then holds only the user's name: it is
Flask's cookie, signed with ``session_secret``, HttpOnly, SameSite=Lax, refused after
``session_max_age``.  No token is kept, in the cookie or the browser's storage.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import requests
from flask import Blueprint, Flask, current_app, redirect, render_template, request, session
from flask.typing import ResponseReturnValue
from werkzeug.http import HTTP_STATUS_CODES

from app.errors import BinderyError
from app.session_secret import ensure_session_secret

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

USER = "user"
#: while the user is at the hub: the state, the PKCE verifier, the page asked for, when it started
PENDING = "oauth"
STATE_MAX_AGE = 600
COOKIE_NAME = "bindery-session"
#: what a hub user name may be when it reaches Bindery (the hub's own names are stricter)
USER_NAME = re.compile(r"\A[^/\x00-\x1f\x7f]{1,255}\Z")

View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


class NotLoggedIn(BinderyError):
    status_code = 403


def init_app(app: Flask) -> None:
    """Templates learn who is logged in; with auth on, the session and the OAuth routes are set up."""
    app.context_processor(lambda: {"auth_user": current_user()})
    settings = app.config["BINDERY"]
    if not settings["auth_enabled"]:
        return
    app.config.update(
        SECRET_KEY=settings["session_secret"] or ensure_session_secret(settings["data_dir"]),
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",  # sent on the hub's redirect back, not on other sites' requests
        SESSION_COOKIE_SECURE=(settings["hub_oauth_redirect_url"] or "").startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings["session_max_age"]),
        SESSION_REFRESH_EACH_REQUEST=False,  # a login lasts session_max_age from the login, not from the last visit
    )
    app.register_blueprint(bp)


def enabled() -> bool:
    return bool(current_app.config["BINDERY"]["auth_enabled"])


def current_user() -> str | None:
    """The logged-in user's hub name; None when nobody is (or authentication is off)."""
    if not enabled():
        return None
    user = session.get(USER)
    return user if isinstance(user, str) and USER_NAME.match(user) else None


def require_user(page: str) -> str | None:
    """The user a launch is for (None with auth off); 403 saying how to log in when nobody is.

    ``page``: the loading page of the launch, where a browser is sent through the hub's login.
    """
    if not enabled():
        return None
    user = current_user()
    if user is None:
        raise NotLoggedIn(f"You are not logged in: this Bindery launches for JupyterHub users only. Open "
                          f"{page} in your browser, log in through the hub, and the launch starts from there.")
    return user


def login_required(view: View) -> View:
    """For pages: a browser without a session goes through the hub's login and comes back here."""
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if enabled() and current_user() is None:
            return login_redirect(_this_page())
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def hub_url() -> str:
    return str(current_app.config["BINDERY"]["hub_url"]).rstrip("/") + "/"


def api_url() -> str:
    settings = current_app.config["BINDERY"]
    return (settings["hub_api_url"] or urllib.parse.urljoin(hub_url(), "hub/api")).rstrip("/")


def redirect_url() -> str:
    return current_app.config["BINDERY"]["hub_oauth_redirect_url"] or f"{request.host_url}oauth_callback"


def login_redirect(next_page: str) -> ResponseReturnValue:
    """Send the browser to the hub's authorize endpoint; the state and verifier stay in its session."""
    settings = current_app.config["BINDERY"]
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    session[PENDING] = {"state": state, "verifier": verifier, "next": safe_next(next_page), "at": int(time.time())}
    query = urllib.parse.urlencode({
        "client_id": settings["hub_oauth_client_id"], "redirect_uri": redirect_url(), "response_type": "code",
        "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
    })
    response = redirect(f"{hub_url()}hub/api/oauth2/authorize?{query}", 302)
    response.headers["Cache-Control"] = "no-store"
    return response


def safe_next(target: Any) -> str:
    """A path on this site to return to; anything else (another host, a scheme) becomes the landing page."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if re.search(r"[\x00-\x1f\x7f]", target):
        return "/"
    return target


def _this_page() -> str:
    """The path and query asked for, escapes intact (a git spec's %2F must survive the round trip)."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw and "://" in raw.split("/", 1)[0]:  # absolute-form request target
        parts = urllib.parse.urlsplit(raw)
        raw = parts.path + (f"?{parts.query}" if parts.query else "")
    return raw or request.full_path.rstrip("?")


def _refused(message: str, code: int) -> ResponseReturnValue:
    return render_template("error.html", code=code, name=HTTP_STATUS_CODES.get(code, "Error"),
                           description=message), code


@bp.route("/oauth_callback")
def callback() -> ResponseReturnValue:
    """The hub sends the browser back here: check the state, learn who logged in, go back to their page."""
    pending = session.pop(PENDING, None)  # one use only, whatever happens next
    state = request.args.get("state", "")
    if (not isinstance(pending, dict) or not state
            or not hmac.compare_digest(str(pending.get("state", "")).encode(), state.encode())):
        return _refused("This log-in cannot be checked: it was not started from this browser (or was started "
                        "again in another tab). Open the link you wanted again to log in.", 400)
    if time.time() - float(pending.get("at") or 0) > STATE_MAX_AGE:
        return _refused("This log-in took too long. Open the link you wanted again to log in.", 400)
    if request.args.get("error"):
        return _refused(f"JupyterHub did not log you in ({request.args['error'][:100]}).", 403)
    code = request.args.get("code", "")
    if not code or len(code) > 1000:
        return _refused("JupyterHub sent no log-in code back. Open the link you wanted again to log in.", 400)
    try:
        user = _user_for_code(code, str(pending.get("verifier", "")))
    except BinderyError as error:
        return _refused(error.message, error.status_code)
    session.clear()
    session[USER] = user
    session.permanent = True  # the cookie lasts session_max_age, also across browser restarts
    log.info("a user logged in through JupyterHub")  # who: the hub's own log says
    return redirect(safe_next(pending.get("next")), 302)


def _user_for_code(code: str, verifier: str) -> str:
    """Exchange the code for a token at the hub, and ask the hub whose token it is."""
    settings = current_app.config["BINDERY"]
    form = {
        "client_id": settings["hub_oauth_client_id"],
        "client_secret": settings["hub_oauth_client_secret"] or settings["hub_api_token"],
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_url(),
        "code_verifier": verifier,
    }
    try:
        answer = requests.post(f"{api_url()}/oauth2/token", data=form, timeout=20)
        if answer.status_code != 200:
            log.warning("JupyterHub refused the OAuth code: HTTP %s", answer.status_code)
            raise BinderyError("JupyterHub refused this log-in. Open the link you wanted again to log in.", 403)
        token = answer.json()["access_token"]
        who = requests.get(f"{api_url()}/user", headers={"Authorization": f"Bearer {token}"}, timeout=20)
        if who.status_code != 200:
            log.warning("JupyterHub did not say who logged in: HTTP %s", who.status_code)
            raise BinderyError("JupyterHub did not say who you are. Open the link you wanted again to log in.", 502)
        name = who.json().get("name")
    except requests.RequestException as exc:
        raise BinderyError(f"JupyterHub did not answer ({type(exc).__name__}); please try again.", 502) from None
    except (ValueError, KeyError, TypeError):
        raise BinderyError("JupyterHub answered the log-in in a way Bindery does not understand.", 502) from None
    if not isinstance(name, str) or not USER_NAME.match(name):
        raise BinderyError("JupyterHub named a user Bindery cannot launch for.", 502)
    return name


@bp.route("/logout")
def logout() -> ResponseReturnValue:
    """Forget the session here, then log out at the hub too (else the next visit logs straight back in)."""
    session.clear()
    response = redirect(f"{hub_url()}hub/logout", 302)
    response.headers["Cache-Control"] = "no-store"
    return response
