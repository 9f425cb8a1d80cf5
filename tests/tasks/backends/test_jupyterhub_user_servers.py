"""The jupyterhub launcher's naming of logged-in users' servers (auth_enabled), checked with JupyterHub's own rule.

The launches themselves, against a real hub, are in tests/system/test_auth.py.
"""

from __future__ import annotations

import pytest
from jupyterhub.slugs import is_valid_safe_slug

from tasks.backends.jupyterhub_launcher import _started_by_bindery, user_server_name
from tasks.payload import load_launch

REPOS = [
    "https://github.com/jupyterhub/binderhub", "https://github.com/org/Repo.With.Dots.git",
    "http://127.0.0.1:8000/repo-0123456789.git", "https://gitlab.com/group/sub/a-very-long-project-name-indeed",
    "https://zenodo.org/record/1234567", "https://x.org/9/--/1234", "https://x.org/", "", "weird://???",
    "https://github.com/o/" + "ä" * 50,
]


@pytest.mark.parametrize("repo", REPOS)
def test_names_are_valid_jupyterhub_server_names(repo: str) -> None:
    name = user_server_name(repo, "0123456789abcdef0123456789abcdef01234567")
    assert is_valid_safe_slug(name), name  # JupyterHub 6 refuses any other name


def test_the_same_link_gives_the_same_name_and_another_repo_or_commit_another() -> None:
    name = user_server_name("https://github.com/org/repo", "abc")
    assert name == user_server_name("https://github.com/org/repo", "abc") and name.startswith("repo-")
    assert name != user_server_name("https://github.com/org/repo", "abd")
    assert name != user_server_name("https://github.com/other/repo", "abc")  # same repo name, other owner


def test_only_servers_a_launch_started_count_as_bindery_s() -> None:
    assert _started_by_bindery({"user_options": {"bindery_launch": "f" * 32}})
    assert not _started_by_bindery({"user_options": {"image": "x"}})
    assert not _started_by_bindery({"user_options": None})


@pytest.mark.parametrize("user, ok", [("alice", True), ("a.b@example.org", True), ("../admin", False),
                                      ("a\nb", False), ("", False), ("x" * 256, False)])
def test_the_launch_payload_carries_a_checked_user_name(user: str, ok: bool) -> None:
    payload = {"id": "0" * 32, "provider": "gh", "spec": "o/r/HEAD", "created": 1.0, "user": user}
    if ok:
        assert load_launch(payload)["user"] == user
    else:
        with pytest.raises(Exception, match="user"):
            load_launch(payload)
    assert load_launch({**payload, "user": None})["user"] is None
