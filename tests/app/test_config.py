"""The config schema: sources, validation messages, and the README reference kept in sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigSchema, load_config, markdown_reference
from app.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"


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


def test_readme_reference_is_generated_from_the_schema() -> None:
    assert markdown_reference() in README.read_text(), \
        "README's configuration reference is stale: regenerate with `python -m app.cli config-reference`"
