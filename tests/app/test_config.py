"""The config schema: sources, validation messages, sections, and docs/configuration.md kept in sync."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from marshmallow import fields, validate

from app.config import SECTIONS, ConfigSchema, JsonValue, exposure_warnings, load_config, markdown_reference
from app.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "configuration.md"
# `config["name"]`, `settings.get("name")`, `app.config["BINDERY"]["name"]`: how code reads a setting
SETTING_USE = re.compile(r'\b(?:config|settings|cfg)\s*(?:\[\s*|\.get\(\s*)"([a-z_]+)"'
                         r'|\["BINDERY"\]\s*\[\s*"([a-z_]+)"')


def test_defaults_load_with_empty_environment() -> None:
    config = load_config(environ={})
    assert config["port"] == 8585
    assert config["launch_ports"] == (9000, 9999)
    assert config["redis_url"] is None
    assert config["keepalive_interval"] == 25.0


def test_yaml_then_environment_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("port: 9000\nimage_prefix: from-yaml-\nquota_total: 3\n")
    config = load_config({"quota_total": 7},
                         environ={"BINDERY_CONFIG": str(path), "BINDERY_IMAGE_PREFIX": "from-env-",
                                  "REDIS_URL": "redis://127.0.0.1:1/0", "PORT": "9100"})
    assert config["image_prefix"] == "from-env-"
    assert config["port"] == 9100
    assert config["quota_total"] == 7
    assert config["redis_url"] == "redis://127.0.0.1:1/0"


@pytest.mark.parametrize(("environ", "expected"), [
    ({"BINDERY_PORT": "eighty"}, "port: Not a valid integer."),
    ({"BINDERY_LAUNCHER": "kubernetes-ish"}, "launcher: Must be one of: docker, bench, jupyterhub."),
    ({"BINDERY_BUILD_POD_NODE_SELECTOR": "[1]"}, "build_pod_node_selector: expected a mapping"),
    ({"BINDERY_BUILD_POD_TOLERATIONS": "{not json"}, "build_pod_tolerations: not valid JSON"),
    ({"BINDERY_LAUNCH_PORTS": "9000"}, 'launch_ports: expected "LOW-HIGH"'),
    ({"BINDERY_REGISTRY_URL": "ftp://x"}, "registry_url: must start with http:// or https://"),
    ({"BINDERY_REGISTRY_USERNAME": "u"}, "registry_password: set both"),
    ({"BINDERY_NO_SUCH_THING": "1"}, "BINDERY_NO_SUCH_THING: unknown setting"),
    ({"BINDERY_BUILD_NETWORK": "host; rm -rf /"}, "build_network: String does not match"),
])
def test_bad_values_stop_start_with_a_message_naming_the_setting(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ=environ)
    assert expected in str(info.value)


def test_bad_value_message_includes_help() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={"BINDERY_KEEPALIVE_INTERVAL": "0"})
    assert "Seconds between `:keepalive` comments" in str(info.value)


def test_unreadable_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BINDERY_CONFIG="):
        load_config(environ={"BINDERY_CONFIG": str(tmp_path / "missing.yaml")})


def test_list_settings_accept_json_and_commas() -> None:
    assert load_config(environ={"BINDERY_LAUNCH_COMMAND": '["jupyter", "lab"]'})["launch_command"] == \
        ["jupyter", "lab"]
    assert load_config(environ={"BINDERY_LAUNCH_COMMAND": "jupyter, notebook"})["launch_command"] == \
        ["jupyter", "notebook"]


def test_every_setting_has_help() -> None:
    for name, field in ConfigSchema().fields.items():
        assert field.metadata.get("help"), f"{name} has no help text"


def test_fields_are_declared_section_by_section_in_reference_order() -> None:
    order = [section.key for section in SECTIONS]
    seen = [field.metadata.get("section") for field in ConfigSchema().fields.values()]
    unknown = {name for name, field in ConfigSchema().fields.items() if field.metadata.get("section") not in order}
    assert not unknown, f"settings with no known section: {sorted(unknown)}"
    positions = [order.index(key) for key in seen]
    assert positions == sorted(positions), "ConfigSchema's fields are not grouped in the order of SECTIONS"
    assert set(seen) == set(order), "a section has no settings"


def test_reference_is_generated_from_the_schema() -> None:
    assert REFERENCE.read_text() == markdown_reference(), \
        "docs/configuration.md is stale: python -m app.cli config-reference > docs/configuration.md"


def test_reference_has_one_heading_per_section_in_order() -> None:
    headings = [line[3:] for line in markdown_reference().splitlines() if line.startswith("## ")]
    assert headings == [section.title for section in SECTIONS]


def test_reference_says_how_to_write_each_mapping_and_list_in_the_environment() -> None:
    """A setting that is not a plain string, number or boolean names its form beside its variable."""
    reference = markdown_reference()
    for name, field in ConfigSchema().fields.items():
        if isinstance(field, (fields.String, fields.Number, fields.Boolean)):
            continue
        form = getattr(field, "env_form", None)
        assert form, f"{name} ({type(field).__name__}) does not say how it is written in the environment (env_form)"
        assert f"| `BINDERY_{name.upper()}`: {form} |" in reference


def test_code_reads_only_settings_the_schema_declares() -> None:
    """A misspelt setting name in app/, tasks/, providers/ or an entry module fails here, not when the line runs."""
    names = set(ConfigSchema().fields)
    used: dict[str, set[str]] = {}
    sources = [*ROOT.glob("*.py"), *(path for top in ("app", "tasks", "providers", "bench")
                                     for path in (ROOT / top).rglob("*.py"))]
    for path in sources:
        for match in SETTING_USE.finditer(path.read_text()):
            used.setdefault(match.group(1) or match.group(2), set()).add(str(path.relative_to(ROOT)))
    assert len(used) > 50, f"the scan found too few settings to be reading the code: {sorted(used)}"
    unknown = {name: sorted(paths) for name, paths in used.items() if name not in names}
    assert not unknown, f"code reads settings the schema does not declare: {unknown}"


# --- every setting loads from the environment and from the YAML file -------------------------

FIELDS = ConfigSchema().fields
# Settings whose valid value the walk cannot make from the field's class and validators: our own
# field types, and values that a check of the whole schema or a validating function constrains.
VALUES: dict[str, Any] = {
    "ban_networks": {"192.0.2.0/24": "Example Corp"},
    "banned_specs": {"gh": ["^evil/.*"]},
    "allowed_specs": {"gh": ["^org/.*"], "gl": ["^group/.*"]},
    "high_quota_specs": {"gh": ["^org/.*"]},
    "spec_config": {"gh": [{"pattern": "^org/.*", "config": {"quota": 3}}]},
    "allowed_private_networks": ["10.0.0.0/8", "::1/128"],
    "user_egress_refused": ["10.0.0.0/8", "fd00::/8"],
    "webhook_repositories": {"https://github.com/org/repo": "a-secret-of-16-or-more"},
    "prebuild_tokens": {"ci-of-my-org": "t" * 32},
    "git_credentials": {"https://git.example.org/team/": {"username": "bot", "password": "TOKEN"}},
    "registry_url": "http://127.0.0.1:5000",
    "launch_ports": (9100, 9199),
    "launch_start_concurrency": 3,
    "flower_basic_auth": "admin:secret",
    "cors_allow_origin": "https://docs.example.org",
    "hub_oauth_client_id": "service-x-test",
    "hub_oauth_redirect_url": "https://bindery.example.org/oauth_callback",
}
# Settings that load only beside others (the schema's checks across settings), given as overrides.
COMPANIONS: dict[str, dict[str, Any]] = {
    "auth_enabled": {"launcher": "jupyterhub", "hub_url": "https://hub.example.org/", "hub_api_token": "t"},
    "git_allow_ssh": {"git_ssh_known_hosts": "/etc/ssh/ssh_known_hosts"},
    "git_ssh_key": {"git_ssh_known_hosts": "/etc/ssh/ssh_known_hosts"},
    "registry_url": {"allowed_private_networks": ["127.0.0.0/8"]},
    "registry_username": {"registry_password": "p"},
    "registry_password": {"registry_username": "u"},
    "warm_pool_top": {"launch_event_sinks": ["file", "redis"]},
    "proxy_api_url": {"proxy_auth_token": "t"},
    "proxy_ssl_key": {"proxy_ssl_cert": "/etc/ssl/bindery.pem"},
    "proxy_ssl_cert": {"proxy_ssl_key": "/etc/ssl/bindery.key"},
}


def _candidates(field: fields.Field) -> list[Any]:
    """Values ``field`` may take, made from its class and validators; [] when the walk has no way to make one."""
    choices = [choice for rule in field.validators if isinstance(rule, (validate.OneOf, validate.ContainsOnly))
               for choice in rule.choices]
    if isinstance(field, fields.Boolean):
        return [not field.load_default]
    if isinstance(field, fields.Number):
        bounds = [bound for rule in field.validators if isinstance(rule, validate.Range)
                  for bound in (rule.min, rule.max) if bound is not None]
        return [*bounds, (field.load_default or 0) + 1]
    if isinstance(field, fields.String):  # fields.Url too
        long_enough = ["x" * rule.min for rule in field.validators if isinstance(rule, validate.Length) and rule.min]
        return choices or ["x-test", "/x-test/0123456789", "https://x-test.example.org/", *long_enough]
    if isinstance(field, fields.List):
        return [[choice] for choice in choices] + [choices] if choices else [[c] for c in _candidates(field.inner)]
    if isinstance(field, fields.Dict) and field.key_field and field.value_field:
        return [{key: value} for key in _candidates(field.key_field) for value in _candidates(field.value_field)]
    if isinstance(field, JsonValue):
        return [{"x-test": "x-test"}] if field.kind is dict else [["x-test"]]
    return []


@functools.cache
def _valid_value(name: str) -> Any:
    """A value of ``name`` that is not its default and loads (beside its COMPANIONS) as itself."""
    candidates = [VALUES[name]] if name in VALUES else _candidates(FIELDS[name])
    if not candidates:
        pytest.fail(f"{name} ({type(FIELDS[name]).__name__}): the walk has no way to make a value of this type; "
                    "add one to VALUES in tests/app/test_config.py")
    default = load_config(environ={})[name]
    problems = []
    for value in candidates:
        try:
            loaded = load_config({**COMPANIONS.get(name, {}), name: value}, environ={})[name]
        except ConfigError as exc:
            problems.append(f"{value!r}: {exc}")
            continue
        if loaded == value and value != default:
            return value
        problems.append(f"{value!r} loads as {loaded!r} (default {default!r})")
    pytest.fail(f"{name}: no value the walk made loads as itself, apart from the default; add one to VALUES "
                f"(or what it needs beside it to COMPANIONS) in tests/app/test_config.py: {problems}")


def _env_text(name: str, value: Any) -> str:
    """``value`` as written in ``BINDERY_<NAME>``: the field's own text (as `app.cli config` shows it), else JSON."""
    shown = FIELDS[name].serialize(name, {name: value})
    return shown if isinstance(shown, str) else json.dumps(shown)


@pytest.mark.parametrize("source", ["environment", "yaml"])
@pytest.mark.parametrize("name", list(FIELDS))
def test_every_setting_loads_from_the_environment_and_the_yaml_file(name: str, source: str, tmp_path: Path) -> None:
    """A setting added later cannot miss a source: each one is set through each, and read back as meant."""
    value = _valid_value(name)
    if source == "environment":
        environ = {f"BINDERY_{name.upper()}": _env_text(name, value)}
    else:
        path = tmp_path / "bindery.yaml"
        path.write_text(yaml.safe_dump({name: json.loads(json.dumps(value))}))  # tuples as YAML lists
        environ = {"BINDERY_CONFIG": str(path)}
    assert load_config(COMPANIONS.get(name), environ=environ)[name] == value, f"{source}: {environ}"


@pytest.mark.parametrize("value, loaded", [("auto", "auto"), ("AUTO", "auto"), (4, 4), ("4", 4)])
def test_launch_start_concurrency_is_auto_or_a_count(value: Any, loaded: Any) -> None:
    assert load_config({"launch_start_concurrency": value}, environ={})["launch_start_concurrency"] == loaded


@pytest.mark.parametrize("value", [0, -1, "many", 2.5, True])
def test_launch_start_concurrency_refuses_anything_else(value: Any) -> None:
    with pytest.raises(ConfigError, match="launch_start_concurrency"):
        load_config({"launch_start_concurrency": value}, environ={})


@pytest.mark.parametrize(("source", "name", "suggested"), [
    ("env", "RATE_LIMT", "rate_limit"),
    ("env", "FLOWER_AUTH", "flower_basic_auth"),
    ("yaml", "max_stream_per_ip", "max_streams_per_ip"),
])
def test_a_misspelt_setting_gets_the_closest_names_not_all_of_them(
        source: str, name: str, suggested: str, tmp_path: Path) -> None:
    if source == "env":
        environ = {f"BINDERY_{name}": "3"}
    else:
        (tmp_path / "c.yaml").write_text(f"{name}: 3\n")
        environ = {"BINDERY_CONFIG": str(tmp_path / "c.yaml")}
    with pytest.raises(ConfigError) as info:
        load_config(environ=environ)
    message = str(info.value)
    assert f"did you mean {suggested}" in message
    assert "launch_ports" not in message and len(message) < 300, "only the close names, not the ~150 known"


def test_a_setting_like_no_other_points_at_the_reference() -> None:
    with pytest.raises(ConfigError, match=r"BINDERY_ZQXJ: unknown setting \(every setting is listed in "
                                          r"docs/configuration.md\)"):
        load_config(environ={"BINDERY_ZQXJ": "1"})


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"])
def test_no_exposure_warning_on_loopback(address: str) -> None:
    assert exposure_warnings(load_config({"listen_address": address}, environ={})) == []


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.0.2.10", "binder.example.org"])
def test_listening_beyond_loopback_warns_about_each_missing_limit(address: str) -> None:
    warnings = exposure_warnings(load_config({"listen_address": address}, environ={}))
    assert [w.split(", and ")[1].split(" ")[0] for w in warnings] == ["rate_limit", "quota_total", "flower_basic_auth"]
    assert all(f"listen_address is {address}" in w for w in warnings)
    safe = load_config({"listen_address": address, "rate_limit": 30, "quota_total": 50,
                        "flower_basic_auth": "operator:flower-secret-1"}, environ={})
    assert exposure_warnings(safe) == []


def test_the_web_prints_the_warnings_once_at_start_without_secrets() -> None:
    """gunicorn.conf.py is what every web start loads (make run, systemd, the chart's pods)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("BINDERY_") and k != "REDIS_URL"}
    loaded = subprocess.run([sys.executable, "-c", "import runpy; runpy.run_path('gunicorn.conf.py')"],
                            cwd=ROOT, env={**env, "BINDERY_LISTEN_ADDRESS": "0.0.0.0", "BINDERY_RATE_LIMIT": "30"},
                            capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    lines = [line for line in loaded.stderr.splitlines() if line.startswith("bindery: WARNING:")]
    assert len(lines) == 2 and "quota_total is 0" in lines[0] and "flower_basic_auth is unset" in lines[1]
    quiet = subprocess.run([sys.executable, "-c", "import runpy; runpy.run_path('gunicorn.conf.py')"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and "WARNING" not in quiet.stderr, "loopback: nothing to warn about"
