"""providers/__init__.py: get_provider parses a spec once per process and hands out copies."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import providers
import providers.github as github
from app.errors import Banned, NotFound, SpecError
from providers import get_provider
from providers.github import GitHubProvider

GIT_FILE_SPEC = "file%3A%2F%2F%2Fsrv%2Frepo.git/main"


@pytest.fixture(autouse=True)
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The gh user names parsed from here on (GitHubProvider checks each once per parse)."""
    providers._parsed.clear()
    seen: list[str] = []
    check = github.check_github_user

    def counting(user: str) -> str:
        seen.append(user)
        return check(user)

    monkeypatch.setattr(github, "check_github_user", counting)
    return seen


def test_a_spec_is_parsed_once_and_each_caller_gets_a_copy(make_config: Callable[..., dict[str, Any]],
                                                           parses: list[str]) -> None:
    config = make_config()
    first, second = get_provider("gh", "u/r/main", config), get_provider("gh", "u/r/main", config)
    assert parses == ["u"]
    assert isinstance(first, GitHubProvider) and first is not second
    assert vars(first) == vars(second) and first.config is config
    first.spec = "only mine"
    assert get_provider("gh", "u/r/main", config).spec == "u/r/main"
    get_provider("gh", "v/r/main", config)
    assert parses == ["u", "v"]


def test_each_config_has_its_own_parse(make_config: Callable[..., dict[str, Any]]) -> None:
    assert get_provider("git", GIT_FILE_SPEC, make_config(allow_file_urls=True)).url == "file:///srv/repo.git"
    with pytest.raises(SpecError, match="must start with one of http://, https://, git://"):
        get_provider("git", GIT_FILE_SPEC, make_config())


def test_bad_specs_are_refused_every_time_and_not_kept(make_config: Callable[..., dict[str, Any]],
                                                       parses: list[str]) -> None:
    config = make_config()
    for _ in range(2):
        with pytest.raises(SpecError):
            get_provider("gh", "-u/r/main", config)
    assert parses == ["-u", "-u"] and not providers._parsed._entries


def test_the_operators_rules_are_checked_on_every_call(make_config: Callable[..., dict[str, Any]]) -> None:
    config = make_config(banned_specs={"gh": ["^u/banned"]}, enabled_providers=["gh", "git"])
    get_provider("gh", "u/r/main", config)
    for _ in range(2):
        with pytest.raises(Banned):
            get_provider("gh", "u/banned/main", config)
    with pytest.raises(SpecError):  # a bad spec is a 400 even where a ban would match too
        get_provider("gh", "u/banned/ma in", config)
    get_provider("gl", "g%2Fp/main", make_config())  # kept for a config that serves gl ...
    with pytest.raises(NotFound, match="unknown provider 'gl'; known: gh, git"):
        get_provider("gl", "g%2Fp/main", config)  # ... is still not served where gl is off


def test_the_cache_is_bounded(make_config: Callable[..., dict[str, Any]], parses: list[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers._parsed, "size", 2)
    config = make_config()
    for user in ("a", "b", "c", "b", "a"):
        get_provider("gh", f"{user}/r/main", config)
    assert len(providers._parsed._entries) == 2
    assert parses == ["a", "b", "c", "a"]  # b was used again, so a went first


def test_providers_share_code_only_through_the_shared_modules() -> None:
    """No provider imports another provider's module (archives extend doi.py), nor any private name."""
    shared = {"providers.base", "providers.http", "providers.git_env", "providers.policy"}
    root = Path(providers.__file__).parent
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("providers"):
                private = [alias.name for alias in node.names if alias.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
                if path.name != "__init__.py":
                    extends_doi = node.module == "providers.doi" and path.stem in ("zenodo", "figshare", "dataverse")
                    assert node.module in shared or extends_doi, f"{path.name} imports {node.module}"
