"""repo2docker's command line and log lines: unit tests of our own mapping."""

from __future__ import annotations

import pytest

from app.config import load_config
from app.errors import SpecError
from providers import get_provider
from tasks.backends.docker_builder import _event, repo2docker_command

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


def test_a_build_that_raced_an_image_removal_is_run_once_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """Podman's 500 "image not known" on an image list is the engine's passing fault: one more try."""
    from app.errors import BuildError
    from tasks.backends.docker_builder import ENGINE_RACE, DockerBuilder

    builder = DockerBuilder(load_config({"redis_url": "redis://127.0.0.1:9"}))
    outcomes = [BuildError(f"Build failed. Error during build: 500 Server Error ... {ENGINE_RACE}"), None]
    runs: list[int] = []

    def build(repo: object, launch: object, emit: object) -> None:
        runs.append(1)
        outcome = outcomes.pop(0)
        if outcome:
            raise outcome

    monkeypatch.setattr(builder, "_build", build)
    said: list[dict] = []
    builder._build_past_engine_races(None, {"image": "i"}, said.append)  # type: ignore[arg-type]
    assert len(runs) == 2 and "building again" in said[0]["message"]
    monkeypatch.setattr(builder, "_build", lambda *a: (_ for _ in ()).throw(BuildError("repo2docker exited with 1")))
    with pytest.raises(BuildError, match="exited with 1"):
        builder._build_past_engine_races(None, {"image": "i"}, said.append)  # type: ignore[arg-type]
