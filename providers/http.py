"""How providers talk HTTP: one session per process, one way to map answers to Bindery errors.

Every provider that asks a web API (gh, gist, gl, the DOI resolver and the archives
behind it, HydroShare, CKAN) goes through :func:`fetch`, so they all

- share one :class:`requests.Session` per process (:func:`session`): connections are
  reused across launches, and the environment (proxies, CA bundle) is read once when
  the session is made instead of on every request (``trust_env`` costs a scan of
  ``os.environ`` and a ``~/.netrc`` look-up per call);
- map the host's answers to the same four errors (NotFound, RateLimited, ProviderError,
  and the address guard's AddressRefused), retry only what a retry can fix, and never
  put a credential into a message (hosts are named without any ``user:password@``).

The GitHub API's headers and rate-limit gauge live here too: the gh and gist providers
and the ``/health`` probe use them.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import logging
import math
import os
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from app import netguard
from app.errors import NotFound, ProviderError, RateLimited

log = logging.getLogger(__name__)

#: Seconds slept before each retry of a 5xx answer or a failed connection (two retries).
RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5)
#: Connections kept per host: a gevent worker resolves many launches against GitHub at once.
POOL_SIZE = 32


# --- the session -------------------------------------------------------------------------------

def new_session(pool_size: int = POOL_SIZE) -> requests.Session:
    """A session that reads nothing from the environment per request, keeps no cookies, and keeps
    up to ``pool_size`` connections per host.

    With ``trust_env`` on, requests scans ``os.environ`` for proxies and looks for a
    ``~/.netrc`` on every request; here the CA bundle is read once, now, and proxies
    are the caller's to give (:func:`proxies_for`).  Cookies are refused because
    launches of different users share a session: nothing a host sets may follow the next.
    """
    made = requests.Session()
    made.trust_env = False
    made.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    made.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    adapter = HTTPAdapter(pool_connections=16, pool_maxsize=pool_size)
    made.mount("https://", adapter)
    made.mount("http://", adapter)
    return made


class _Shared:
    """The process's session and the proxy settings read with it (a forked child makes its own)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.proxies = {key: value for key, value in urllib.request.getproxies_environment().items() if value}
        self.session = new_session()


_shared: _Shared | None = None
_shared_lock = threading.Lock()


def _current() -> _Shared:
    shared = _shared
    if shared is not None and shared.pid == os.getpid():
        return shared
    return _renew(shared)


def _renew(stale: _Shared | None) -> _Shared:
    global _shared
    with _shared_lock:
        if _shared is stale or _shared is None or _shared.pid != os.getpid():
            # Made on first use (importing this module starts nothing), and again in a forked
            # child: a parent's pooled sockets must not be shared with it.
            _shared = _Shared()
        return _shared


def session() -> requests.Session:
    """The requests session every provider of this process uses (see :class:`_Shared`)."""
    return _current().session


def reset_session() -> None:
    """Forget the session (and the environment read with it); the next use makes a new one."""
    global _shared
    with _shared_lock:
        stale, _shared = _shared, None
    if stale is not None and stale.pid == os.getpid():
        stale.session.close()


def _bypasses(url: str, no_proxy: str) -> bool:
    """Whether ``no_proxy`` exempts ``url``, judged as requests judges it with ``trust_env``."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if host is None:
        return True
    entries = [entry for entry in no_proxy.replace(" ", "").split(",") if entry]
    literal = netguard.literal_address(host)
    for entry in entries:
        if literal is not None and literal.version == 4:
            try:
                if literal in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        else:
            name = entry.lstrip(".")
            with_port = f"{host}:{parts.port}" if parts.port else host
            if name in (host, with_port) or host.endswith(f".{name}") or with_port.endswith(f".{name}"):
                return True
    return bool(urllib.request.proxy_bypass_environment(host, {"no": no_proxy}))  # type: ignore[attr-defined]


def proxies_for(url: str) -> dict[str, str]:
    """The proxy for ``url`` from the environment the session was made in (``{}``: go direct)."""
    proxies = _current().proxies
    if not proxies or _bypasses(url, proxies.get("no", "")):
        return {}
    scheme = urllib.parse.urlsplit(url).scheme
    proxy = proxies.get(scheme) or proxies.get("all")
    return {scheme: proxy} if proxy else {}


# --- answers to errors -------------------------------------------------------------------------

def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, never with a ``user:password@`` it may carry (for messages)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def minutes_until(response: requests.Response) -> int:
    """Minutes until the host lifts its rate limit, from whichever header it sent."""
    headers = response.headers
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        value = headers.get(name, "")
        if value.isdigit():
            reset = int(value)
            seconds = reset - time.time() if reset > 10**9 else reset  # epoch, or seconds from now
            return max(1, math.ceil(seconds / 60))
    retry_after = headers.get("retry-after", "")
    if retry_after.isdigit():
        return max(1, math.ceil(int(retry_after) / 60))
    return 1


def is_rate_limited(response: requests.Response) -> bool:
    """429, or GitHub's 403 with no requests left (or a ``retry-after``: its secondary limit)."""
    headers = response.headers
    remaining = headers.get("x-ratelimit-remaining", headers.get("ratelimit-remaining"))
    if response.status_code == 429:
        return True
    return response.status_code == 403 and (remaining == "0" or "retry-after" in headers)


def fetch(client: requests.Session, url: str, headers: dict[str, str], timeout: float,
          service: str, not_found: str, *, auth: tuple[str, str] | None = None,
          observe: Callable[[requests.Response], None] | None = None, allow_redirects: bool = True,
          ok: tuple[int, ...] = (200, 304)) -> requests.Response:
    """GET ``url``; a response with an ``ok`` status is returned, every failure becomes a Bindery error.

    5xx answers and connection failures are retried (they are usually brief);
    4xx answers are not (asking again gives the same answer).  ``observe`` sees
    every response (the rate-limit headers come on errors too).
    """
    host = origin(url)
    proxies = proxies_for(url)
    for attempt in range(len(RETRY_DELAYS) + 1):
        try:
            response = client.get(url, headers=headers, timeout=timeout, allow_redirects=allow_redirects,
                                  auth=auth, proxies=proxies)
        except requests.RequestException as exc:
            problem = f"could not reach the {service} API at {host}: {type(exc).__name__}"
        else:
            if observe is not None:
                observe(response)
            status = response.status_code
            if status in ok:
                return response
            if status in (404, 422):
                raise NotFound(not_found)
            if is_rate_limited(response):
                raise RateLimited(f"{service} API rate limit exceeded, "
                                  f"try again in {minutes_until(response)} minutes")
            if status == 401:
                raise ProviderError(f"the {service} API at {host} refused the configured token (401)")
            problem = f"the {service} API at {host} answered {status}"
            if status < 500:
                raise ProviderError(problem)
        if attempt < len(RETRY_DELAYS):
            time.sleep(RETRY_DELAYS[attempt])
    raise ProviderError(f"{problem} (tried {len(RETRY_DELAYS) + 1} times)")


def json_body(response: requests.Response, service: str) -> Any:
    """The JSON of a 200 answer, or a clear error naming the host."""
    try:
        return response.json()
    except ValueError:
        raise ProviderError(f"the {service} API at {origin(response.url)} answered with invalid JSON") from None


def get_json(client: requests.Session, url: str, headers: dict[str, str], timeout: float,
             service: str, not_found: str, **kwargs: Any) -> Any:
    """GET ``url`` and return its JSON body (see :func:`fetch`)."""
    return json_body(fetch(client, url, headers, timeout, service, not_found, **kwargs), service)


def get_json_guarded(client: requests.Session, url: str, config: dict[str, Any], what: str, service: str,
                     not_found: str) -> Any:
    """:func:`get_json` from a host a user (or a DOI's registrant) chose.

    Only hosts whose every address is allowed (app/netguard.py), and no redirect:
    it would lead somewhere unchecked.
    """
    netguard.check_url_host(url, config, what)
    return get_json(client, url, {"Accept": "application/json"}, float(config["provider_timeout"]), service,
                    not_found, allow_redirects=False)


# --- the GitHub API (gh, gist, /health) --------------------------------------------------------

_rate_limit_remaining: int | None = None


def github_headers(config: dict[str, Any]) -> tuple[dict[str, str], tuple[str, str] | None]:
    """Headers and basic auth for the GitHub API: the token, else the OAuth app's id and secret."""
    headers = {"Accept": "application/vnd.github+json"}
    if config.get("github_token"):
        headers["Authorization"] = f"token {config['github_token']}"
        return headers, None
    if config.get("github_client_id") and config.get("github_client_secret"):
        return headers, (str(config["github_client_id"]), str(config["github_client_secret"]))
    return headers, None


def observe_github_rate_limit(response: requests.Response) -> None:
    """Keep the requests GitHub still allows (every answer says), and warn when few are left."""
    global _rate_limit_remaining
    value = response.headers.get("x-ratelimit-remaining", "")
    if value.isdigit():
        _rate_limit_remaining = int(value)
        limit = response.headers.get("x-ratelimit-limit", "")
        if limit.isdigit() and int(limit) and int(value) < 0.2 * int(limit):
            log.warning("GitHub rate limit remaining %s/%s", value, limit)


def github_rate_limit_remaining() -> int | None:
    """Requests GitHub still allows us in this window, from the last answer seen (None: none yet).

    For the ``bindery_github_rate_limit_remaining`` gauge.
    """
    return _rate_limit_remaining
