"""app/push_payloads.py: GitHub's and GitLab's push payloads read into one shape; anything else is a 400."""

from __future__ import annotations

import urllib.parse

import pytest

from app.push_payloads import MalformedPayload, github_push, gitlab_push, load_body, repository_of
from tests.hook_payloads import ZERO, encode
from tests.hook_payloads import github_push as github_payload
from tests.hook_payloads import gitlab_push as gitlab_payload

SHA = "c" * 40


def test_github_s_push_is_read_with_its_repository_normalised() -> None:
    payload = github_payload(html_url="https://github.com/Org/Repo", clone_url="https://github.com/Org/Repo.git",
                             full_name="Org/Repo", after=SHA, ref="refs/heads/main")
    push = github_push(payload)
    assert (push.repository, push.full_name, push.after, push.branch, push.tag, push.deleted) == \
        ("https://github.com/org/repo", "Org/Repo", SHA, "main", None, False)
    assert repository_of(payload, "github") == "https://github.com/org/repo"


def test_a_deleted_ref_and_a_tag_are_told_apart() -> None:
    deleted = github_push(github_payload(html_url="https://github.com/o/r", clone_url="https://github.com/o/r.git",
                                         full_name="o/r", after=SHA, deleted=True))
    assert deleted.deleted and deleted.after == ZERO
    tag = gitlab_push(gitlab_payload(web_url="https://gitlab.com/g/p", path_with_namespace="g/p", after=SHA,
                                     ref="refs/tags/v2", tag=True))
    assert (tag.tag, tag.branch, tag.clone_url) == ("v2", None, "https://gitlab.com/g/p.git")
    assert gitlab_push(gitlab_payload(web_url="https://gitlab.com/g/p", path_with_namespace="g/p",
                                      after=ZERO)).deleted


def test_github_s_form_encoding_is_read_too() -> None:
    payload = github_payload(html_url="https://github.com/o/r", clone_url="https://github.com/o/r.git",
                             full_name="o/r", after=SHA)
    body = ("payload=" + urllib.parse.quote(encode(payload).decode())).encode()
    assert load_body(body, "application/x-www-form-urlencoded") == payload


@pytest.mark.parametrize("payload", [
    {"object_kind": "note"},
    {"object_kind": "push", "after": SHA, "ref": "refs/heads/main", "project": {"web_url": 5}},
])
def test_what_is_not_a_gitlab_push_is_400(payload: dict) -> None:
    with pytest.raises(MalformedPayload) as refused:
        gitlab_push(payload)
    assert refused.value.status_code == 400
