"""Log lines: JSON with the launch id and image, and secrets masked whoever logs them."""

from __future__ import annotations

import json
import logging

import pytest

from app.config import load_config
from app.logging_setup import configure_logging, launch_context


def test_json_lines_carry_launch_and_mask_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config({"registry_username": "robot", "registry_password": "hunter2-registry",
                          "github_token": "ghp_secret_token_value", "flower_basic_auth": "admin:flower-pass"},
                         environ={})
    configure_logging(config)
    log = logging.getLogger("bindery.test")
    with launch_context("c" * 32, "img:1"):
        log.info("pushing with %s and %s", "hunter2-registry", "token ghp_secret_token_value")
    log.warning("flower login admin:flower-pass")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    first, second = lines[-2], lines[-1]
    assert first["launch_id"] == "c" * 32 and first["image"] == "img:1" and first["level"] == "INFO"
    assert "hunter2-registry" not in first["message"] and "ghp_secret_token_value" not in first["message"]
    assert first["message"].count("***") == 2
    assert "flower-pass" not in second["message"] and "launch_id" not in second


@pytest.mark.parametrize("each_task", [False, True])
def test_celery_s_per_task_lines_follow_log_each_task(each_task: bool) -> None:
    configure_logging(load_config({"log_each_task": each_task}, environ={}))
    for name in ("celery.worker.strategy", "celery.app.trace"):
        logger = logging.getLogger(name)
        assert logger.isEnabledFor(logging.INFO) is each_task
        assert logger.isEnabledFor(logging.ERROR), "failures are logged either way"
    assert logging.getLogger("tasks.steps.launch").isEnabledFor(logging.INFO), "Bindery's own lines stay"
    configure_logging(load_config(environ={}))
