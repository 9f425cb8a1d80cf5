"""Where built images live, and how we ask whether one is already there.

A launch only builds when its image is missing, so this check runs for every
launch and must be cheap, correct and honest about failures: a registry we
cannot ask is a :class:`~app.errors.RegistryError` (503, try again later), never
a silent "missing" that would start a needless build.

Two stores exist.  :class:`RegistryClient` speaks the Docker Registry v2 API
(Docker Hub, GCR/Artifact Registry, the reference ``registry``) including its
two auth schemes: HTTP Basic and the bearer-token flow of
https://distribution.github.io/distribution/spec/auth/token/.  When no registry
is configured, :class:`EngineStore` looks in the container engine's own image
store, because that is where the build left the image.

Secrets (password, tokens) travel only in ``Authorization`` headers: never in
URLs, messages or logs.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import requests

from app.errors import RegistryError
from providers.base import redact_url

log = logging.getLogger(__name__)

#: Every manifest kind a build or a multi-arch base may produce.  Without the
#: list/index types a registry answers 404 for images that do exist.
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
MANIFEST_ACCEPT = ", ".join(MANIFEST_TYPES)

DEFAULT_TOKEN_TTL = 60.0
# Refresh a little before the registry would start refusing the token.
_TOKEN_MARGIN = 5.0
_DOCKER_HUB_HOSTS = {"", "docker.io", "index.docker.io", "registry-1.docker.io"}

# Indirection so tests can move the clock without touching the time module.
_monotonic = time.monotonic


def split_image(image: str) -> tuple[str, str, str]:
    """Split an image reference the way the Docker CLI does, so we ask for the same thing it pushes.

    Returns ``(host, repository, tag)``; ``host`` is ``""`` for Docker Hub.  A
    digest (``name@sha256:...``) is returned in the tag position because the
    manifests endpoint accepts either.  Raises :class:`ValueError` for an
    empty name (image names are made by us, so that is a bug, not user input).
    """
    reference = image.strip()
    name, tag = reference, "latest"
    if "@" in reference:
        name, tag = reference.split("@", 1)
        # A tag before a digest ("img:1@sha256:...") is ignored by the engine as well.
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:
            name = name[:colon]
    else:
        slash = reference.rfind("/")
        colon = reference.rfind(":")
        if colon > slash:
            name, tag = reference[:colon], reference[colon + 1:]
    host = ""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, name = first, rest
    if not name or not tag or name.startswith("/") or name.endswith("/"):
        raise ValueError(f"not a valid image reference: {image!r}")
    if host in _DOCKER_HUB_HOSTS and "/" not in name:
        name = f"library/{name}"
    return host, name, tag


def parse_www_authenticate(header: str) -> list[tuple[str, dict[str, str]]]:
    """Parse challenges by hand because registries put commas inside quoted values.

    ``Bearer realm="...",scope="repository:a/b:pull,push"`` must not be split
    at the comma in the scope.  Returns ``[(scheme_lowercase, params), ...]``.
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    pos, length = 0, len(header)
    token = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
    while pos < length:
        while pos < length and header[pos] in " \t,":
            pos += 1
        match = token.match(header, pos)
        if not match:
            break
        word = match.group(0)
        after = match.end()
        # A word followed by '=' is a parameter of the current challenge; otherwise a new scheme.
        probe = after
        while probe < length and header[probe] in " \t":
            probe += 1
        if probe < length and header[probe] == "=" and challenges:
            pos = probe + 1
            while pos < length and header[pos] in " \t":
                pos += 1
            if pos < length and header[pos] == '"':
                pos += 1
                chars: list[str] = []
                while pos < length and header[pos] != '"':
                    if header[pos] == "\\" and pos + 1 < length:
                        pos += 1
                    chars.append(header[pos])
                    pos += 1
                pos += 1  # closing quote
                value = "".join(chars)
            else:
                end = pos
                while end < length and header[end] not in ", \t":
                    end += 1
                value, pos = header[pos:end], end
            challenges[-1][1][word.lower()] = value
        else:
            challenges.append((word.lower(), {}))
            pos = after
    return challenges


def _short_reason(exc: BaseException) -> str:
    """A one-line cause for a failed request, without the long urllib3 wrapping."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if match:
        return match.group(1).strip()
    for hint in ("Name or service not known", "Connection refused", "Connection reset",
                 "Remote end closed connection", "No route to host"):
        if hint.lower() in text.lower():
            return hint
    return type(exc).__name__


def _basic_header(username: str, password: str) -> str:
    # requests encodes Basic credentials as latin-1; build it ourselves so any password works.
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class RegistryClient:
    """Asks a v2 registry whether a manifest exists, handling Basic and bearer-token auth.

    One client is shared by many greenlets/threads; the token cache is locked.
    """

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("registry_url must be an http:// or https:// URL")
        # Credentials written into the URL are honoured but never sent or shown as part of it.
        if username is None and parts.username:
            username = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
        self.url = redact_url(url.strip()).rstrip("/")
        self.username = username or None
        self._password = password if self.username else None
        self.timeout = timeout
        if session is None:
            # Many greenlets check at once; keep their connections instead of discarding them.
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=128)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self.session = session
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()
        # Once the registry asked for Basic auth, send it up front and save a round trip.
        self._use_basic = False

    def __repr__(self) -> str:
        return f"RegistryClient(url={self.url!r}, username={self.username!r})"

    def auth_config(self) -> dict[str, str] | None:
        """Credentials in the shape the docker SDK's ``push(auth_config=...)`` wants."""
        if not self.username:
            return None
        return {"username": self.username, "password": self._password or ""}

    # --- the check -------------------------------------------------------------------------

    def exists(self, image: str) -> bool:
        """True when the registry has the manifest, so a launch can skip the build."""
        host, repository, tag = split_image(image)
        target = f"{self.url}/v2/{repository}/manifests/{urllib.parse.quote(tag, safe=':')}"
        if host and host != urllib.parse.urlsplit(self.url).netloc:
            log.debug("image %s names host %s; asking configured registry %s", image, host, self.url)

        preemptive = self._cached_auth(repository)
        response = self._request("HEAD", target, preemptive)
        if response.status_code == 401:
            challenges = parse_www_authenticate(response.headers.get("WWW-Authenticate", ""))
            authorization = self._answer_challenge(challenges, repository, stale=preemptive)
            response = self._request("HEAD", target, authorization)
            if response.status_code in (401, 403):
                raise self._refused(repository)
        elif response.status_code == 403:
            raise self._refused(repository)
        return self._interpret(response, repository, tag)

    def _interpret(self, response: requests.Response, repository: str, tag: str) -> bool:
        status = response.status_code
        if status == 200:
            return True
        if status == 404:
            return False
        if status == 429:
            raise RegistryError(f"registry at {self.url} is rate limiting us (HTTP 429); try again later")
        if status >= 500:
            raise RegistryError(f"registry at {self.url} failed with HTTP {status} "
                                f"while checking {repository}:{tag}")
        raise RegistryError(f"registry at {self.url} answered HTTP {status} for {repository}:{tag}")

    def _refused(self, repository: str) -> RegistryError:
        if self.username:
            return RegistryError(f"registry at {self.url} refused our credentials for {repository}: "
                                 "check registry_username/registry_password")
        return RegistryError(f"registry at {self.url} refused anonymous access to {repository}: "
                             "set registry_username/registry_password")

    # --- auth ------------------------------------------------------------------------------

    def _cached_auth(self, repository: str) -> str | None:
        if self._use_basic and self.username:
            return _basic_header(self.username, self._password or "")
        scope = f"repository:{repository}:pull"
        now = _monotonic()
        with self._lock:
            for (_realm, _service, cached_scope), (token, expires) in self._tokens.items():
                if cached_scope == scope and expires > now:
                    return f"Bearer {token}"
        return None

    def _answer_challenge(
        self, challenges: list[tuple[str, dict[str, str]]], repository: str, stale: str | None,
    ) -> str:
        by_scheme = {scheme: params for scheme, params in reversed(challenges)}
        if "bearer" in by_scheme and by_scheme["bearer"].get("realm"):
            params = by_scheme["bearer"]
            scope = params.get("scope") or f"repository:{repository}:pull"
            return "Bearer " + self._token(params["realm"], params.get("service", ""), scope, repository, stale)
        if "basic" in by_scheme:
            if not self.username:
                raise RegistryError(f"registry at {self.url} requires a login for {repository}: "
                                    "set registry_username/registry_password")
            if stale is not None and stale.startswith("Basic"):
                raise self._refused(repository)
            self._use_basic = True
            return _basic_header(self.username, self._password or "")
        raise RegistryError(f"registry at {self.url} asked for authentication we do not support "
                            f"({', '.join(s for s, _ in challenges) or 'no WWW-Authenticate header'})")

    def _token(self, realm: str, service: str, scope: str, repository: str, stale: str | None) -> str:
        key = (realm, service, scope)
        now = _monotonic()
        with self._lock:
            cached = self._tokens.get(key)
            if cached and cached[1] > now and f"Bearer {cached[0]}" != stale:
                return cached[0]
            self._tokens.pop(key, None)
        shown_realm = redact_url(realm)
        params = {"scope": scope}
        if service:
            params["service"] = service
        authorization = _basic_header(self.username, self._password or "") if self.username else None
        response = self._request("GET", realm, authorization, params=params, where=shown_realm)
        if response.status_code in (401, 403):
            raise self._refused(repository)
        if response.status_code != 200:
            raise RegistryError(f"token service {shown_realm} of registry at {self.url} "
                                f"failed with HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token service {shown_realm} of registry at {self.url} returned no token")
        try:
            ttl = float(body.get("expires_in") or DEFAULT_TOKEN_TTL)
        except (TypeError, ValueError):
            ttl = DEFAULT_TOKEN_TTL
        lifetime = ttl - _TOKEN_MARGIN if ttl > 2 * _TOKEN_MARGIN else ttl / 2
        with self._lock:
            self._tokens[key] = (token, _monotonic() + lifetime)
        log.debug("got registry token for %s from %s (valid %.0fs)", scope, shown_realm, ttl)
        return token

    # --- transport -------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        authorization: str | None,
        params: dict[str, str] | None = None,
        where: str | None = None,
    ) -> requests.Response:
        headers = {"Accept": MANIFEST_ACCEPT} if method == "HEAD" else {"Accept": "application/json"}
        if authorization:
            headers["Authorization"] = authorization
        try:
            response = self.session.request(method, url, headers=headers, params=params,
                                            timeout=self.timeout, allow_redirects=True)
        except (requests.ConnectionError, requests.Timeout) as exc:
            place = self.url if where is None else f"{self.url} (token service {where})"
            raise RegistryError(f"registry at {place} is unreachable: {_short_reason(exc)}") from exc
        except requests.RequestException as exc:
            raise RegistryError(f"cannot ask registry at {self.url}: {type(exc).__name__}") from exc
        log.debug("%s %s -> %s", method, redact_url(url), response.status_code)
        return response


class EngineStore:
    """Images kept in the container engine itself, used when no registry is configured."""

    def __init__(self, docker_client: Any, where: str = "") -> None:
        self.docker_client = docker_client
        self.where = where  # the engine's URL as configured (a client says http+docker://localhost for a socket)

    def _where(self) -> str:
        base = self.where or getattr(getattr(self.docker_client, "api", None), "base_url", None)
        return redact_url(base) if isinstance(base, str) and base else "the configured docker_host"

    def exists(self, image: str) -> bool:
        """True when the engine already has the image, so a launch can skip the build."""
        import docker.errors  # deferred: the registry path never needs the docker SDK

        try:
            self.docker_client.images.get(image)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as exc:
            status = getattr(exc, "status_code", None)
            reason = f"HTTP {status}" if status else type(exc).__name__
            raise RegistryError(f"container engine at {self._where()} is unreachable: {reason}") from exc
        except (requests.ConnectionError, requests.Timeout, docker.errors.DockerException) as exc:
            raise RegistryError(f"container engine at {self._where()} is unreachable: "
                                f"{_short_reason(exc)}") from exc
        return True


def make_image_store(config: dict[str, Any], docker_client_factory: Callable[[], Any]) -> RegistryClient | EngineStore:
    """Pick the store from config; the docker client is only created when it is the store."""
    if config.get("registry_url"):
        return RegistryClient(
            config["registry_url"],
            username=config.get("registry_username"),
            password=config.get("registry_password"),
            timeout=float(config.get("registry_timeout") or 10.0),
        )
    return EngineStore(docker_client_factory(), config.get("docker_host") or "")


class RememberFound:
    """Remembers, for a while, images a store said it has.

    Images are named by commit, so one that exists keeps existing; a cached launch
    then costs no registry round trip.  Misses are never remembered: a build may
    land at any moment.
    """

    def __init__(self, store: RegistryClient | EngineStore, seconds: float, size: int = 10000) -> None:
        self.store = store
        self.seconds = seconds
        self.size = size
        self._found: dict[str, float] = {}

    def exists(self, image: str) -> bool:
        now = time.monotonic()
        if self._found.get(image, 0.0) > now:
            return True
        found = self.store.exists(image)
        if found and self.seconds > 0:
            if len(self._found) >= self.size:
                self._found = {k: v for k, v in self._found.items() if v > now}
                if len(self._found) >= self.size:
                    self._found.clear()
            self._found[image] = now + self.seconds
        return found
