"""repo2docker's command line and log lines: unit tests of our own mapping."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.config import load_config
from app.errors import SpecError
from providers import get_provider
from tasks.backends.docker_builder import DockerBuilder, _event, repo2docker_command

CONFIG = load_config(environ={})
SHA = "a" * 40


def _launch(ref: str = SHA) -> dict[str, object]:
    return {"resolved_ref": ref, "image": f"bindery-x:{ref}"}


def test_command_is_an_argument_list_with_the_url_after_double_dash() -> None:
    repo = get_provider("git", "https%3A%2F%2Fexample.org%2Frepo.git/main", CONFIG)
    command = repo2docker_command(CONFIG, repo, _launch(), "/tmp/c.py")
    assert command[-2:] == ["--", "https://example.org/repo.git"]
    for flag in ("--json-logs", "--no-run", "--user-id", "--user-name", "--ref", "--image-name"):
        assert flag in command
    assert command[command.index("--ref") + 1] == SHA


@pytest.mark.parametrize("ref", ["--upload-pack=touch x", "-x", "a b", "a\nb"])
def test_unsafe_refs_never_reach_the_command(ref: str) -> None:
    repo = get_provider("git", "https%3A%2F%2Fexample.org%2Frepo.git/main", CONFIG)
    with pytest.raises(SpecError):
        repo2docker_command(CONFIG, repo, _launch(ref), "/tmp/c.py")


def test_json_log_lines_become_events() -> None:
    assert _event('{"message": "Cloning...\\n", "phase": "fetching"}', "fetching") == \
        {"phase": "fetching", "message": "Cloning...\n"}
    assert _event('{"message": "STEP 2/5: RUN x\\n", "phase": "building"}', "fetching")["phase"] == "building"
    # lines without a phase, repo2docker's own "failed", and plain lines keep the phase before them
    assert _event('{"message": "Picked Git content provider.\\n"}', "fetching")["phase"] == "fetching"
    assert _event('{"message": "boom", "phase": "failed"}', "building") == \
        {"phase": "building", "message": "boom\n"}
    assert _event("not json at all", "building") == {"phase": "building", "message": "not json at all\n"}
    assert _event("[1, 2]", "building")["message"] == "[1, 2]\n"


def test_repo2docker_runs_with_our_config_and_never_lists_the_engine_s_images(tmp_path: Path) -> None:
    """repo2docker's own built-already check lists every image, which Podman fails while another
    is removed; with our config file it never asks. Loaded as repo2docker loads it, in a process of its own."""
    builder = DockerBuilder(load_config({"redis_url": "redis://127.0.0.1:9", "build_network": "host"}))
    path = builder._config_file(str(tmp_path))
    probe = f"""
import sys
from traitlets.config.loader import PyFileConfigLoader
from repo2docker.app import Repo2Docker
from repo2docker import contentproviders as cp
config = PyFileConfigLoader({path!r}).load_config()
app = Repo2Docker(config=config)
class NoListing:
    def images(self):
        raise AssertionError("listed every image")
app.get_engine = lambda: NoListing()
assert app.find_image() is False
assert app.extra_build_kwargs == {{"network_mode": "host"}}
assert cp.Git in app.content_providers and cp.Local in app.content_providers
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
