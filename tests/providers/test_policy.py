"""The operator's rules on specs: banned, allowed, high-quota and spec_config, and the quota a launch gets."""

from __future__ import annotations

import time
import uuid
from typing import Any

import docker
import pytest
from flask import Flask

from app import create_app
from app.errors import Banned, QuotaExceeded
from app.redis_server import EmbeddedRedis
from providers import get_provider
from providers.policy import check_allowed, quota_for
from tasks.backends.docker_launcher import INSTANCE, LABEL, DockerLauncher, repo_label
from tests.conftest import JUPYTER_IMAGE

SWH = "swh:1:rev:" + "ab" * 20


def test_banned_is_case_insensitive_and_anchored(make_config):
    config = make_config(banned_specs={"gh": ["^evil/.*", "spam"]})
    for spec in ("evil/repo/HEAD", "EVIL/Repo/main", "spam/x/HEAD"):
        with pytest.raises(Banned, match="has been banned") as err:
            get_provider("gh", spec, config)
        assert err.value.status_code == 403
    get_provider("gh", "good/evil/HEAD", config)  # re.match: only at the start, as BinderHub
    get_provider("gl", "evil%2Frepo/HEAD", config)  # rules are per provider


def test_allowed_specs_limit_a_provider(make_config):
    config = make_config(allowed_specs={"gh": ["^jupyterhub/"]})
    get_provider("gh", "JupyterHub/binderhub/HEAD", config)
    with pytest.raises(Banned, match="not among the specs"):
        get_provider("gh", "someone/else/HEAD", config)
    get_provider("gl", "someone%2Felse/HEAD", config)
    with pytest.raises(Banned):  # banned wins over allowed
        check_allowed("gh", "jupyterhub/x/HEAD",
                      make_config(allowed_specs={"gh": ["^jupyterhub/"]}, banned_specs={"gh": ["^jupyterhub/x"]}))


def test_quota_default_high_and_spec_config(make_config):
    config = make_config(quota_per_repo=5, high_quota_per_repo=50, high_quota_specs={"gh": ["^big/"]},
                         spec_config={"gh": [{"pattern": "^big/special", "config": {"quota": 7}},
                                             {"pattern": "^big/special/v2", "config": {"quota": 9}}]})
    assert quota_for("gh", "small/r/HEAD", config) == 5
    assert quota_for("gh", "BIG/r/HEAD", config) == 50
    assert quota_for("gh", "big/special/HEAD", config) == 7
    assert quota_for("gh", "big/special/v2", config) == 9, "the last match wins"
    assert quota_for("gl", "big%2Fr/HEAD", config) == 5
    everywhere = make_config(spec_config=[{"pattern": ".*", "config": {"quota": 2}}])
    assert quota_for("gl", "a%2Fb/HEAD", everywhere) == quota_for("swh", SWH, everywhere) == 2


@pytest.mark.parametrize("bad", [{"gh": ["("]}, {"nope": ["x"]}, "not json", {"gh": 3}])
def test_bad_patterns_stop_the_start(make_config, bad):
    from app.errors import ConfigError

    with pytest.raises(ConfigError, match="banned_specs"):
        make_config(banned_specs=bad)


def test_spec_config_from_env_json():
    from app.config import load_config

    config = load_config({}, environ={"BINDERY_SPEC_CONFIG": '{"gh": [{"pattern": "^a/", "config": {"quota": 1}}]}',
                                      "BINDERY_HIGH_QUOTA_SPECS": '{"gl": ["^x"]}'})
    assert config["spec_config"]["gh"][0]["config"] == {"quota": 1}
    assert config["high_quota_specs"] == {"gl": ["^x"]}


def test_resolve_step_puts_the_quota_in_the_payload(redis_server: EmbeddedRedis, monkeypatch):
    """The real resolve_ref task (no network: a SWHID) hands check_registry the spec's quota."""
    import tasks.chain
    from tasks.steps.resolve_ref import resolve_ref

    app = create_app({"redis_url": redis_server.url, "launcher": "bench", "quota_per_repo": 3,
                      "spec_config": {"swh": [{"pattern": "^swh:1:rev:", "config": {"quota": 1}}]}})
    handed: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks.chain, "resolved", handed.append)
    with app.app_context():
        resolve_ref({"id": uuid.uuid4().hex, "provider": "swh", "spec": SWH, "created": time.time()})
    assert handed and handed[0]["quota"] == 1 and handed[0]["resolved_ref"] == SWH


@pytest.mark.engine
def test_launcher_enforces_the_launch_quota(redis_server: EmbeddedRedis, docker_host: str,
                                            engine: docker.DockerClient) -> None:
    """quota_per_repo allows 5, but the launch's own quota (1) is what counts."""
    app: Flask = create_app({"redis_url": redis_server.url, "docker_host": docker_host, "quota_per_repo": 5})
    repo_url = f"http://127.0.0.1:1/{uuid.uuid4().hex}.git"
    launcher = DockerLauncher(engine, app.config["BINDERY"])
    sleeper = engine.containers.run(JUPYTER_IMAGE, ["sleep", "300"], detach=True, network_mode="host",
                                    labels={LABEL: uuid.uuid4().hex, INSTANCE: "bindery",
                                            "org.bindery.repo": repo_label(repo_url),
                                            "org.bindery.created": str(int(time.time()))})
    try:
        with app.app_context():
            launcher.check_quota(repo_url)
            launcher.check_quota(repo_url, 0)  # 0: no limit
            with pytest.raises(QuotaExceeded, match="\\(1\\)"):
                launcher.check_quota(repo_url, 1)
    finally:
        sleeper.remove(force=True)


def test_web_refuses_a_banned_spec_before_queueing(redis_server: EmbeddedRedis):
    app = create_app({"redis_url": redis_server.url, "launcher": "bench", "banned_specs": {"gh": ["^evil/"]}})
    response = app.test_client().get("/build/gh/Evil/repo/HEAD", headers={"Accept": "text/event-stream"})
    assert response.status_code == 200
    assert b'"phase": "failed"' in response.data and b'"status_code": 403' in response.data
    assert b"banned" in response.data and b"waiting" not in response.data
