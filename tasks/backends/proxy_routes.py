"""The proxy's rules: which server each ``/user/<id>/`` path of Bindery's public address reaches.

configurable-http-proxy (CHP, the proxy JupyterHub uses) listens on Bindery's one public
address; ``/`` goes to the web (its ``--default-target``) and ``/user/<id>`` to one launched
server.  The rules:

1. A route is recorded in Redis (``keys.PROXY_ROUTES``: id -> target) *before* it is sent to
   CHP, and removed from both when its server goes (``launcher.stop``, the cleanup beat
   task, an abandoned launch).  Redis is the truth; CHP's table is a copy kept in memory.
2. A route is added before the launch's ``ready`` event, so the URL handed out answers at
   once.  When CHP is down at that moment the launch still succeeds: the route is recorded
   and comes with the next :func:`reconcile`.
3. :func:`reconcile` makes CHP's ``/user/`` routes equal the recorded ones (adds the missing,
   deletes the extra) and leaves every other route alone (``/``: the web).  The runner calls
   it after each start of CHP, so a restarted CHP serves every running server again.
4. A route id is the server's launch id (``/user/<launch id>``) or, for a warm-pool server,
   its pool id: it was started with that base URL before anyone claimed it, and gets its
   route only when claimed.
5. The API token travels in the ``Authorization`` header only, never in a URL or a log line.

Everything here takes its Redis client and :class:`ProxyAPI` as arguments: the runner (no
Flask app) and the launcher (the app's client) share it.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

from app import keys

log = logging.getLogger(__name__)

PREFIX = "/user/"
#: Seconds one API call may take: CHP answers from memory, in milliseconds.
TIMEOUT = 5.0


def route_path(route_id: str) -> str:
    """CHP's path of a server's route (no trailing slash: it prefixes ``/user/<id>/...``)."""
    return f"{PREFIX}{route_id}"


def base_url(route_id: str) -> str:
    """The server's own ``ServerApp.base_url``: CHP passes the path through unchanged."""
    return f"{route_path(route_id)}/"


class ProxyAPI:
    """CHP's REST API: ``GET /api/routes``, ``POST`` and ``DELETE /api/routes/<path>``."""

    def __init__(self, url: str, token: str, timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # an http_proxy in the environment must not see our token
        self.session.headers["Authorization"] = f"token {token}"

    def routes(self) -> dict[str, str]:
        """Every route CHP holds: path -> target."""
        response = self.session.get(f"{self.url}/api/routes", timeout=self.timeout)
        response.raise_for_status()
        return {path: str(data.get("target", "")) for path, data in response.json().items()}

    def add(self, path: str, target: str) -> None:
        response = self.session.post(f"{self.url}/api/routes{path}", json={"target": target}, timeout=self.timeout)
        response.raise_for_status()

    def delete(self, path: str) -> None:
        response = self.session.delete(f"{self.url}/api/routes{path}", timeout=self.timeout)
        if response.status_code != 404:  # already gone is what we wanted
            response.raise_for_status()

    def answers(self) -> bool:
        try:
            self.routes()
        except (requests.RequestException, ValueError):
            return False
        return True


def from_config(config: dict[str, Any]) -> ProxyAPI | None:
    """The proxy of this configuration, or None when servers are reached directly."""
    if not config.get("proxy_api_url"):
        return None
    return ProxyAPI(config["proxy_api_url"], config["proxy_auth_token"] or "")


def add(redis: Any, api: ProxyAPI, route_id: str, target: str) -> None:
    """Record the route, then send it to CHP (a CHP that is away gets it from reconcile)."""
    redis.hset(keys.PROXY_ROUTES(), route_id, target)
    try:
        api.add(route_path(route_id), target)
    except requests.RequestException as exc:
        log.warning("proxy: route %s not added now (%s); the next reconcile adds it",
                    route_path(route_id), type(exc).__name__)


def remove(redis: Any, api: ProxyAPI, route_id: str) -> None:
    """Forget the route, then delete it from CHP (a CHP that is away loses it at reconcile)."""
    redis.hdel(keys.PROXY_ROUTES(), route_id)
    try:
        api.delete(route_path(route_id))
    except requests.RequestException as exc:
        log.warning("proxy: route %s not deleted now (%s); the next reconcile deletes it",
                    route_path(route_id), type(exc).__name__)


def recorded(redis: Any) -> dict[str, str]:
    """The routes that should exist: path -> target."""
    return {route_path(_text(route_id)): _text(target)
            for route_id, target in redis.hgetall(keys.PROXY_ROUTES()).items()}


def reconcile(redis: Any, api: ProxyAPI) -> tuple[int, int]:
    """Make CHP's ``/user/`` routes equal the recorded ones; returns (added, deleted)."""
    wanted = recorded(redis)
    present = {path: target for path, target in api.routes().items() if path.startswith(PREFIX)}
    added = deleted = 0
    for path, target in wanted.items():
        if present.get(path) != target:
            api.add(path, target)
            added += 1
    for path in present.keys() - wanted.keys():
        api.delete(path)
        deleted += 1
    if added or deleted:
        log.info("proxy: reconciled routes (%d added, %d deleted)", added, deleted)
    return added, deleted


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
