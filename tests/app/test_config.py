"""The config schema: sources, validation messages, sections, and docs/configuration.md kept in sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.config import SECTIONS, ConfigSchema, exposure_warnings, load_config, markdown_reference
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
