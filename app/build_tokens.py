"""Build tokens: the loading page's proof that a launch comes from this Bindery's own page.

``/v2/<provider>/<spec>`` embeds a token signed for that provider/spec and the
origin the page was served to; the page passes it as ``?build_token=`` on its
event stream (EventSource cannot send headers).  A valid token skips the rate
limit, as in BinderHub, so people clicking links are not throttled with scripts.
A token for another spec or origin, forged or expired, is refused (403).

The token is not a credential: anyone may fetch the page and get one.  It is
bound to one spec and one origin and expires soon, so it cannot be harvested
for a flood of other launches or used from another site's pages.

Signing is itsdangerous (Flask's own).  The key is ``build_token_secret``, or
else a random key created once in Redis (``SET NX``) that every web process reads.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import urllib.parse

import redis
from flask import current_app, request
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

from app import keys
from app.errors import BinderyError

SALT = "bindery.build-token.v1"
SIGNING_KEY_NAME = keys.BUILD_TOKEN_KEY()  # where the shared key lives in Redis
#: A real token is ~160 characters; anything much longer is not one of ours.
MAX_TOKEN_LENGTH = 512


class InvalidBuildToken(BinderyError):
    status_code = 403


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def signing_key(client: redis.Redis, configured: str | None) -> str:
    """The configured secret, else the one shared through Redis (created by whoever asks first)."""
    if configured:
        return configured
    value = client.get(SIGNING_KEY_NAME)
    if value is None:
        client.set(SIGNING_KEY_NAME, secrets.token_urlsafe(32), nx=True)
        value = client.get(SIGNING_KEY_NAME)
    return str(value)


def _serializer() -> URLSafeTimedSerializer:
    settings = current_app.config["BINDERY"]
    key = signing_key(current_app.extensions["bindery.redis"], settings["build_token_secret"])
    return URLSafeTimedSerializer(key, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256})


def request_origin() -> str:
    """Where the request comes from: the ``Origin`` header's host, else the ``Host`` the client used.

    Browsers send ``Origin`` on cross-site event streams, so a token copied into
    another site's page carries that site's origin and is refused.
    """
    origin = request.headers.get("Origin")
    if origin:
        try:
            host = urllib.parse.urlsplit(origin).netloc
        except ValueError:  # e.g. "http://[::1": not a URL, so it matches no host
            host = ""
        return host.lower() or origin.strip().lower()
    return request.host.lower()


def issue(provider: str, spec: str) -> str:
    """A token for ``provider/spec`` from this request's origin (the loading page)."""
    return str(_serializer().dumps({"s": _digest(f"{provider}/{spec}"), "o": _digest(request_origin())}))


def verify(token: str, provider: str, spec: str) -> None:
    """Return quietly for a good token for this spec and origin; raise 403 saying what is wrong."""
    settings = current_app.config["BINDERY"]
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidBuildToken("The build token is not valid. Open the launch link again to get a new one.")
    try:
        claims = _serializer().loads(token, max_age=settings["build_token_expires_seconds"])
    except SignatureExpired:
        raise InvalidBuildToken("The build token has expired. Reload the page to get a new one.") from None
    except BadData:
        raise InvalidBuildToken("The build token is not valid. Open the launch link again to get a new one.") \
            from None
    if not isinstance(claims, dict) or not hmac.compare_digest(str(claims.get("s")),
                                                               _digest(f"{provider}/{spec}")):
        raise InvalidBuildToken("The build token was issued for another repository; open that "
                                "repository's launch link to launch it.")
    if settings["build_token_check_origin"] and \
            not hmac.compare_digest(str(claims.get("o")), _digest(request_origin())):
        raise InvalidBuildToken("The build token was issued to another site; launch from this "
                                "Bindery's own page.")
