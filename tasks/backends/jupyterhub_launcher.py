"""Launcher ``jupyterhub``: Bindery as a JupyterHub service, as BinderHub launches.

Per launch: a temporary user (``hub_user_prefix`` + a random part), a token of
that user that opens only the new server, and a named server started with
``user_options`` {image, token, repo_url, binder_ref_url, default_url, cors_allow_origin, ...};
the hub's spawner takes the image, the server's default page and the origins it trusts from there
(``bindery_spawner.BinderSpawnerMixin``).  Once the server is ready, one request
through the hub finds whether the image serves that page (tasks/backends/default_url.py);
a fallback reaches the loading page in a ``launching`` event.  The
server's progress stream becomes ``launching`` events.  A failed spawn is
retried with a new user after a growing pause.  A hub at its ``concurrent_spawn_limit``
answers 429 ("Too many users trying to log in right now"): the launch does not fail, it
waits its turn in a line shared by every worker (tasks/lock.py, ``StartLine`` ``hub``) and
is told, as the docker launcher's waiting launches are, how many start before it.  The service token needs the
scopes ``admin:users``, ``admin:servers``, ``access:servers`` and ``tokens``.

A launch for a logged-in user (``auth_enabled``; the payload's ``user``) starts no
temporary user and makes no token: it starts, or goes back to, a named server of
that user (see ``launch_for_user`` and docs/authentication.md).

The token is asked of the hub (one call per launch more than BinderHub, which makes its
token itself): BinderHub's spawner can take a token of its own only by running the server
without the hub's authentication (``auth_enabled`` off: ``--ServerApp.token=<token>``
instead of jupyterhub-singleuser), so the hub no longer decides who opens it nor sees its
activity.  A hub token keeps both, opens only this one server and expires with
``launch_max_age``; the price is one hub round trip per launch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
from flask import current_app, has_app_context

from app.errors import LaunchError, QuotaExceeded
from providers.http import new_session, proxies_for
from tasks.backends.default_url import default_url_event, find_default_url
from tasks.launch_record import ended
from tasks.lock import LeftTheLine, StartLine, starting_message

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]
SERVER_NAME = "binder"
_T = TypeVar("_T")


class SpawnFailed(Exception):
    """One spawn attempt failed; the message is the hub's reason."""


_pools: dict[tuple[int, str], tuple[requests.Session, requests.Session]] = {}
_pools_lock = threading.Lock()


def pooled_sessions(hub_url: str, pool_size: int = 32) -> tuple[requests.Session, requests.Session]:
    """This process's two sessions for one hub: the service's API calls, and requests to new servers.

    Made once per process (a forked child makes its own) from providers.http.new_session:
    connections stay open across launches, no cookie is kept, and the environment (proxy,
    CA bundle) is read here once instead of on every call.  The servers' session is apart so
    the service's token header never rides along; each of its requests carries its own.
    ``pool_size``: connections kept per host, as many as the launches that may call at once
    (a connection beyond the pool is closed after its request, and the next one is made anew).
    """
    key = (os.getpid(), hub_url)
    found = _pools.get(key)
    if found is None:
        with _pools_lock:
            found = _pools.get(key)
            if found is None:
                found = (new_session(pool_size), new_session(pool_size))
                for session in found:
                    session.proxies = proxies_for(hub_url)
                _pools[key] = found
    return found


def _created(user: dict[str, Any]) -> float:
    stamp = user.get("created") or user.get("last_activity")
    if not stamp:
        return 0.0
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC).timestamp()


class JupyterHubLauncher:
    def __init__(self, config: dict[str, Any], session: requests.Session | None = None, redis: Any = None) -> None:
        if not config.get("hub_url") or not config.get("hub_api_token"):
            raise LaunchError("The jupyterhub launcher needs hub_url and hub_api_token.", 503)
        self.config = config
        self.hub_url = config["hub_url"].rstrip("/") + "/"
        self.api_url = (config.get("hub_api_url") or urllib.parse.urljoin(self.hub_url, "hub/api")).rstrip("/")
        self.session, self.server_session = pooled_sessions(self.api_url, max(32, config.get("launch_concurrency", 0)))
        if session is not None:
            self.session = session
        self.headers = {"Authorization": f"token {config['hub_api_token']}"}
        self._redis = redis

    @property
    def redis(self) -> Any:
        """The app's Redis (the line of launches the hub turned away); None outside the app (a script)."""
        if self._redis is None and has_app_context():
            self._redis = current_app.extensions["bindery.redis"]
        return self._redis

    # --- HTTP ----------------------------------------------------------------------------
    def _call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 202, 204), **kwargs: Any) -> Any:
        try:
            response = self.session.request(method, f"{self.api_url}{path}", headers=self.headers,
                                            timeout=kwargs.pop("timeout", 30), **kwargs)
        except requests.RequestException as exc:
            raise LaunchError(f"JupyterHub did not answer: {type(exc).__name__}", 503) from exc
        if response.status_code not in ok:
            raise LaunchError(f"JupyterHub refused {method} {path.split('?')[0]}: {response.status_code} "
                              f"{_hub_message(response)}", 503)
        return response

    # --- quota ---------------------------------------------------------------------------
    def _servers(self) -> list[dict[str, Any]]:
        """The servers of Bindery's users that run or are starting."""
        users = self._call("GET", "/users?state=active&limit=10000").json()
        if isinstance(users, dict):  # paginated answer
            users = users.get("items", [])
        return [server for user in users for server in (user.get("servers") or {}).values()
                if user["name"].startswith(self.config["hub_user_prefix"]) or _started_by_bindery(server)]

    def ping(self) -> None:
        """Raises LaunchError when the hub's API does not answer (for /health)."""
        self._call("GET", "/", timeout=10)

    def running(self) -> int:
        """Servers running or starting (for /health's quota check)."""
        return len(self._servers())

    def check_quota(self, repo_url: str, quota: int | None = None) -> None:
        """``quota``: the launch's own per-repository quota (spec policy), else quota_per_repo."""
        total = self.config["quota_total"]
        per_repo = self.config["quota_per_repo"] if quota is None else quota
        if not total and not per_repo:
            return
        servers = self._servers()
        if total and len(servers) >= total:
            raise QuotaExceeded(f"This Bindery is full ({total} servers running); please try again later.")
        same = sum(1 for server in servers if (server.get("user_options") or {}).get("repo_url") == repo_url)
        if per_repo and same >= per_repo:
            raise QuotaExceeded(f"Too many servers of {repo_url} are running ({per_repo}); "
                                "please try again later.")

    # --- launch --------------------------------------------------------------------------
    def launch(self, launch: dict[str, Any], emit: Emit) -> tuple[str, str]:
        """Start a server through the hub; returns (url, token) when it is ready."""
        if launch.get("user"):
            return self.launch_for_user(launch, emit)
        self.check_quota(launch["repo_url"], launch.get("quota"))
        deadline = time.monotonic() + self.config["launch_timeout"]
        users: list[str] = []

        def launch_once() -> tuple[str, str]:  # a new user each time: a failed one is deleted
            users.append(f"{self.config['hub_user_prefix']}{launch['id'][:12]}-{secrets.token_hex(4)}")
            return self._launch_once(users[-1], launch, emit, deadline)

        return self._retrying(launch_once, lambda spawn_failed: self._delete_user(users[-1]),
                              "the server", emit, deadline)

    def _retrying(self, attempt: Callable[[], _T], undo: Callable[[bool], None], what: str,
                  emit: Emit, deadline: float) -> _T:
        """``attempt`` again after a failed spawn, ``hub_launch_retries`` times, after growing pauses.

        ``undo(spawn_failed)`` cleans up after each failed attempt, and after an error (a
        timeout, the launch cancelled) before it is raised.
        """
        attempts = self.config["hub_launch_retries"] + 1
        reason = ""
        for tried in range(1, attempts + 1):
            try:
                return attempt()
            except SpawnFailed as exc:
                reason = str(exc)
                undo(True)
            except BaseException:
                undo(False)
                raise
            if tried < attempts:
                pause = self.config["hub_retry_delay"] * 2 ** (tried - 1)
                if time.monotonic() + pause >= deadline:
                    break
                emit({"phase": "launching", "message": f"Launch attempt {tried} failed ({reason}); "
                                                       f"retrying in {pause:g} s...\n"})
                time.sleep(pause)
        raise LaunchError(f"Launching {what} failed after {tried} attempts: {reason}")

    def _launch_once(self, username: str, launch: dict[str, Any], emit: Emit, deadline: float) -> tuple[str, str]:
        quoted = urllib.parse.quote(username)
        self._call("POST", f"/users/{quoted}")
        token = self._call("POST", f"/users/{quoted}/tokens", json={
            "note": f"bindery launch {launch['id']}", "expires_in": self.config["launch_max_age"],
            "scopes": [f"access:servers!server={username}/{SERVER_NAME}"],
        }).json()["token"]
        options = {"image": launch["image"], "token": token, "repo_url": launch["repo_url"],
                   "binder_ref_url": launch.get("ref_url") or "",
                   "binder_launch_host": launch.get("origin") or "",
                   "default_url": self.config["default_url"],
                   "cors_allow_origin": self.config["cors_allow_origin"]}
        server = f"/users/{quoted}/servers/{SERVER_NAME}"
        response = self._post_in_order(server, options, launch, emit)
        deadline = max(deadline, time.monotonic() + self.config["launch_timeout"])  # (from the hub's yes)
        if response.status_code in (400, 500):
            # A spawn that fails fast answers 500 "Internal Server Error"; the hub tells the
            # reason on the server's progress stream (a `failed` event), so read it there.
            self._follow_progress(server, lambda event: None, deadline, fallback=_hub_message(response))
        url = urllib.parse.urljoin(self.hub_url, self._follow_progress(server, emit, deadline))
        # not the service's session: the user's token goes on each request; no cookie is kept
        found = find_default_url(self.server_session, url, token, self.config["default_url"],
                                 image=launch["image"])
        event = default_url_event(self.config["default_url"], found)
        if event:
            emit(event)
        return url, token

    def _post_in_order(self, server: str, options: dict[str, Any], launch: dict[str, Any],
                       emit: Emit) -> requests.Response:
        """Ask the hub to start the server; while it answers 429, wait in line and ask again, in order.

        JupyterHub turns spawns away while ``concurrent_spawn_limit`` are pending and suggests
        coming back in 30-60 s.  Launches it turned away wait in a line of their own: only the
        first asks again (after 0.5 s, growing to 5 s), so the hub sees one retry at a time and
        the launches start in the order they were asked for.  A new launch joins the line when
        anyone waits in it, so it never overtakes them.  Waiting does not count against
        ``launch_timeout``, which starts once the hub takes the spawn.
        """
        def post() -> requests.Response:
            return self._call("POST", server, json=options, ok=(201, 202, 400, 429, 500))

        def told(ahead: int) -> None:
            emit({"phase": "launching", "message": starting_message(ahead), "ahead": ahead})

        client = self.redis
        line = StartLine(client, "hub") if client is not None else None
        if line is None or not line.waiting():
            response = post()
            if response.status_code != 429:
                return response
            log.info("launch %s: the hub is at its spawn limit (%s); waiting in line", launch["id"],
                     _hub_message(response))

        def wanted() -> bool:
            return client is None or ended(launch["id"], client) is None

        arrival = launch.get("created") or time.time()
        with line.turn(launch["id"], arrival, 1, told=told, wanted=wanted) if line else nullcontext():
            told(0)
            pause = 0.5
            while True:
                time.sleep(pause)
                response = post()
                if response.status_code != 429:
                    return response
                if not wanted():
                    raise LeftTheLine(launch["id"])
                pause = min(pause * 1.5, 5.0)

    def _follow_progress(self, server: str, emit: Emit, deadline: float, fallback: str = "",
                         name: str = SERVER_NAME) -> str:
        """Re-emit the hub's progress events; the server's URL once it is ready."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LaunchError(f"The server did not start within {self.config['launch_timeout']} s.")
        response = self._call("GET", f"{server}/progress", stream=True, timeout=(10, remaining),
                              ok=(200, 400) if fallback else (200,))
        if response.status_code != 200:  # "not starting": no verdict there either
            raise SpawnFailed(fallback)
        try:
            for line in response.iter_lines(decode_unicode=True):
                if time.monotonic() > deadline:
                    break
                if not line or not line.startswith("data:"):
                    continue
                try:
                    event = json.loads(line[5:])
                except ValueError:
                    continue
                if event.get("failed"):
                    raise SpawnFailed(str(event.get("message") or "the spawn failed"))
                if event.get("message"):
                    emit({"phase": "launching", "message": f"{event['message']}\n"})
                if event.get("ready"):
                    return str(event["url"])
        except requests.RequestException as exc:
            if time.monotonic() <= deadline:
                raise LaunchError(f"Lost JupyterHub's progress stream: {type(exc).__name__}", 503) from exc
        finally:
            response.close()
        if time.monotonic() > deadline:
            raise LaunchError(f"The server did not start within {self.config['launch_timeout']} s.")
        # The stream ended without a verdict: ask the hub directly.
        state = self._call("GET", server.replace(f"/servers/{name}", "")).json()
        info = (state.get("servers") or {}).get(name) or {}
        if info.get("ready"):
            return str(info["url"])
        raise SpawnFailed("the server stopped while starting")

    def _delete_user(self, username: str, wait: float = 60) -> None:
        """Stop the user's server (the hub refuses to delete active ones), then the user."""
        path = f"/users/{urllib.parse.quote(username)}"
        try:
            stop = self._call("DELETE", f"{path}/servers/{SERVER_NAME}", ok=(202, 204, 400, 404),
                              json={"remove": True}, timeout=wait)
            deadline = time.monotonic() + wait
            while stop.status_code == 202 and time.monotonic() < deadline:
                user = self._call("GET", path, ok=(200, 404))
                if user.status_code == 404 or SERVER_NAME not in (user.json().get("servers") or {}):
                    break
                time.sleep(0.5)
            self._call("DELETE", path, ok=(204, 404), timeout=wait)
        except LaunchError as exc:
            log.warning("could not delete hub user %s: %s", username, exc.message)

    # --- cleanup -------------------------------------------------------------------------
    def _users(self) -> list[dict[str, Any]]:
        users = self._call("GET", "/users?limit=10000").json()
        return users.get("items", []) if isinstance(users, dict) else users

    def stop(self, launch_id: str) -> int:
        """Delete the launch's users (and so their servers): cancelled or given up."""
        prefix = f"{self.config['hub_user_prefix']}{launch_id[:12]}-"
        names = [user["name"] for user in self._users() if user["name"].startswith(prefix)]
        for name in names:
            self._delete_user(name)
        return len(names) + self._stop_user_servers(launch_id)

    def cleanup(self, max_age: float) -> int:
        """Delete Bindery's users whose server stopped, or that are older than ``max_age``."""
        users = self._users()
        removed = 0
        now = time.time()
        for user in users:
            if not user["name"].startswith(self.config["hub_user_prefix"]):
                continue
            servers = user.get("servers") or {}
            pending = user.get("pending") or any(s.get("pending") for s in servers.values())
            idle = not servers and not pending and now - _created(user) > 300
            if idle or now - _created(user) > max_age:
                self._delete_user(user["name"])
                removed += 1
        return removed

    # --- logged-in users (auth_enabled) --------------------------------------------------
    def launch_for_user(self, launch: dict[str, Any], emit: Emit) -> tuple[str, str]:
        """A named server of the logged-in user, one per repository and ref (see user_server_name).

        A second launch of the same link goes back to the running server.  No token is made: the
        user's own hub login opens their server, and nobody else's.
        """
        user = launch["user"]
        name = user_server_name(launch["repo_url"], launch.get("resolved_ref") or "")
        server = f"/users/{urllib.parse.quote(user, safe='')}/servers/{name}"
        deadline = time.monotonic() + self.config["launch_timeout"]
        existing = self._user_servers(user)
        current = existing.get(name)
        if current and current.get("ready"):
            emit({"phase": "launching", "message": "Your server for this repository is already running; "
                                                   "going back to it.\n"})
            return urllib.parse.urljoin(self.hub_url, current["url"]), ""
        if current is None:
            self.check_quota(launch["repo_url"], launch.get("quota"))
            self._check_user_quota(existing)
        def undo(spawn_failed: bool) -> None:  # after an error, only a server this launch started
            self._remove_user_server(server, only_launch=None if spawn_failed else launch["id"])

        url = self._retrying(lambda: self._start_user_server(user, name, server, launch, emit, deadline), undo,
                             "your server", emit, deadline)
        return url, ""

    def _user_servers(self, user: str) -> dict[str, dict[str, Any]]:
        """The user's running or starting servers, by name."""
        answer = self._call("GET", f"/users/{urllib.parse.quote(user, safe='')}", ok=(200, 404))
        if answer.status_code == 404:
            raise LaunchError("Your JupyterHub user does not exist (any more): log out, log in again and "
                              "relaunch.", 403)
        return dict(answer.json().get("servers") or {})

    def _check_user_quota(self, existing: dict[str, dict[str, Any]]) -> None:
        limit = self.config["max_servers_per_user"]
        mine = sum(1 for server in existing.values() if _started_by_bindery(server))
        if limit and mine >= limit:
            raise QuotaExceeded(f"You have {mine} servers running from this Bindery, the most one user may have "
                                f"({limit}). Stop one on your JupyterHub home page ({self.hub_url}hub/home) and "
                                "launch again.")

    def _start_user_server(self, user: str, name: str, server: str, launch: dict[str, Any], emit: Emit,
                           deadline: float) -> str:
        options = {"image": launch["image"], "repo_url": launch["repo_url"],
                   "binder_ref_url": launch.get("ref_url") or "",
                   "binder_launch_host": launch.get("origin") or "", "bindery_launch": launch["id"],
                   "default_url": self.config["default_url"]}  # (the server's root opens it: no token to check it)
        response = self._post_in_order(server, options, launch, emit)
        deadline = max(deadline, time.monotonic() + self.config["launch_timeout"])  # (from the hub's yes)
        if response.status_code == 400:  # already running (a launch of the same link got there first)
            info = self._user_servers(user).get(name) or {}
            if info.get("ready"):
                return urllib.parse.urljoin(self.hub_url, info["url"])
            if info.get("pending") != "spawn":
                raise SpawnFailed(_hub_message(response))
        if response.status_code == 500:  # the reason is on the progress stream, as in _launch_once
            self._follow_progress(server, lambda event: None, deadline, fallback=_hub_message(response), name=name)
        return urllib.parse.urljoin(self.hub_url, self._follow_progress(server, emit, deadline, name=name))

    def _remove_user_server(self, server: str, only_launch: str | None = None, wait: float = 60) -> None:
        """Stop and forget one named server of a user (never the user); ``only_launch``: if that launch started it."""
        try:
            if only_launch is not None:
                info = self._call("GET", server, ok=(200, 404))
                options = (info.json().get("user_options") or {}) if info.status_code == 200 else {}
                if options.get("bindery_launch") != only_launch:
                    return
            stop = self._call("DELETE", server, ok=(202, 204, 400, 404), json={"remove": True}, timeout=wait)
            deadline = time.monotonic() + wait
            while stop.status_code == 202 and time.monotonic() < deadline:
                if self._call("GET", server, ok=(200, 404)).status_code == 404:
                    break
                time.sleep(0.5)
        except LaunchError as exc:
            log.warning("could not remove a user's server: %s", exc.message)

    def _stop_user_servers(self, launch_id: str) -> int:
        """Remove the logged-in users' servers this launch started (a cancelled launch); others stay."""
        users = self._call("GET", "/users?state=active&limit=10000").json()
        if isinstance(users, dict):
            users = users.get("items", [])
        found = [f"/users/{urllib.parse.quote(user['name'], safe='')}/servers/{name}"
                 for user in users for name, server in (user.get("servers") or {}).items()
                 if (server.get("user_options") or {}).get("bindery_launch") == launch_id]
        for server in found:
            self._remove_user_server(server)
        return len(found)


def user_server_name(repo_url: str, ref: str) -> str:
    """The name of a user's server for a repository at a ref: the same link, the same server.

    A valid JupyterHub server name (a safe slug: 1-30 characters of a-z, 0-9 and single
    hyphens, starting with a letter): the repository's name, then a hash of the
    repository URL and the ref, so different repositories with one name do not meet.
    """
    path = urllib.parse.urlsplit(repo_url).path if "://" in repo_url else repo_url
    last = [part for part in path.lower().removesuffix(".git").split("/") if part][-1:] or [""]
    tail = re.sub(r"^[^a-z]+", "", "-".join(re.findall(r"[a-z0-9]+", last[0])))[:21].strip("-") or "repo"
    digest = hashlib.sha256(f"{repo_url}\n{ref}".encode()).hexdigest()[:8]
    return f"{tail}-{digest}"


def _started_by_bindery(server: dict[str, Any]) -> bool:
    """A logged-in user's server that a Bindery launch started (its user_options name the launch)."""
    return bool((server.get("user_options") or {}).get("bindery_launch"))


def _hub_message(response: requests.Response) -> str:
    try:
        return str(response.json().get("message") or response.reason)
    except ValueError:
        return response.reason or ""
