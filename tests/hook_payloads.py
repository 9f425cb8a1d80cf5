"""Push webhooks as GitHub and GitLab send them: their real payload shapes, signed with a secret.

The shapes follow the hosts' documented examples (GitHub's ``push`` event as in
octokit/webhooks' payload examples, GitLab's ``Push Hook``), with every field a receiver
may meet, not only those Bindery reads.  Used by tests/app/test_hooks.py, the system test
and bench/build_on_push.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

ZERO = "0" * 40


def _github_user(login: str) -> dict[str, Any]:
    return {"login": login, "id": 21031067, "node_id": "MDQ6VXNlcjIxMDMxMDY3",
            "avatar_url": "https://avatars1.githubusercontent.com/u/21031067?v=4", "gravatar_id": "",
            "url": f"https://api.github.com/users/{login}", "html_url": f"https://github.com/{login}",
            "type": "User", "site_admin": False}


def github_push(*, html_url: str, clone_url: str, full_name: str, after: str, ref: str = "refs/heads/main",
                default_branch: str = "main", before: str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
                deleted: bool = False) -> dict[str, Any]:
    """GitHub's ``push`` event payload (``X-GitHub-Event: push``)."""
    owner, _, name = full_name.partition("/")
    commit = None if deleted else {
        "id": after, "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433", "distinct": True,
        "message": "Update README.md", "timestamp": "2019-05-15T15:20:30-05:00",
        "url": f"{html_url}/commit/{after}",
        "author": {"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com",
                   "username": "Codertocat"},
        "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
        "added": [], "removed": [], "modified": ["README.md"]}
    return {
        "ref": ref, "before": before, "after": ZERO if deleted else after, "created": False,
        "deleted": deleted, "forced": False, "base_ref": None,
        "compare": f"{html_url}/compare/{before[:12]}...{(ZERO if deleted else after)[:12]}",
        "commits": [commit] if commit else [], "head_commit": commit,
        "repository": {
            "id": 186853002, "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=", "name": name, "full_name": full_name,
            "private": False, "owner": {"name": owner, "email": None, **_github_user(owner)},
            "html_url": html_url, "description": None, "fork": False, "url": html_url,
            "hooks_url": f"https://api.github.com/repos/{full_name}/hooks",
            "created_at": 1557933565, "updated_at": "2019-05-15T15:20:41Z", "pushed_at": int(time.time()),
            "git_url": clone_url.replace("https://", "git://", 1), "ssh_url": f"git@github.com:{full_name}.git",
            "clone_url": clone_url, "svn_url": html_url, "homepage": None, "size": 0, "language": "Python",
            "archived": False, "disabled": False, "default_branch": default_branch, "master_branch": default_branch,
            "stargazers": 0, "topics": [], "visibility": "public", "web_commit_signoff_required": False},
        "pusher": {"name": owner, "email": "21031067+Codertocat@users.noreply.github.com"},
        "sender": _github_user(owner),
    }


def github_ping(*, html_url: str, full_name: str) -> dict[str, Any]:
    """GitHub's ``ping`` event, sent when the webhook is created."""
    return {"zen": "Keep it logically awesome.", "hook_id": 109948940,
            "hook": {"type": "Repository", "id": 109948940, "name": "web", "active": True, "events": ["push"],
                     "config": {"content_type": "json", "insecure_ssl": "0", "url": "https://binder.example/hooks/github"}},
            "repository": {"id": 186853002, "name": full_name.split("/")[-1], "full_name": full_name,
                           "html_url": html_url, "default_branch": "main"},
            "sender": _github_user(full_name.split("/")[0])}


def github_headers(body: bytes, secret: str | None, *, event: str = "push",
                   delivery: str | None = None) -> dict[str, str]:
    """The headers GitHub sends with ``body``; signed with ``secret`` (None: no signature)."""
    headers = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/044aadd",
               "X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
               "X-GitHub-Hook-ID": "109948940"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return headers


def gitlab_push(*, web_url: str, path_with_namespace: str, after: str, ref: str = "refs/heads/main",
                default_branch: str = "main", before: str = "95790bf891e76fee5e1747ab589903a6a1f80f22",
                tag: bool = False) -> dict[str, Any]:
    """GitLab's ``Push Hook`` (or ``Tag Push Hook``) payload."""
    name = path_with_namespace.rsplit("/", 1)[-1]
    deleted = after == ZERO
    commit = {"id": after, "message": "Update Catalan translation to e38cb41.\n", "title": "Update Catalan translation",
              "timestamp": "2011-12-12T14:27:31+02:00", "url": f"{web_url}/-/commit/{after}",
              "author": {"name": "Jordi Mallach", "email": "jordi@softcatala.org"},
              "added": ["CHANGELOG"], "modified": ["app/controller/application.rb"], "removed": []}
    project = {"id": 15, "name": name, "description": "", "web_url": web_url, "avatar_url": None,
               "git_ssh_url": f"git@example.com:{path_with_namespace}.git", "git_http_url": f"{web_url}.git",
               "namespace": path_with_namespace.rsplit("/", 1)[0], "visibility_level": 0,
               "path_with_namespace": path_with_namespace, "default_branch": default_branch, "ci_config_path": "",
               "homepage": web_url, "url": f"git@example.com:{path_with_namespace}.git",
               "ssh_url": f"git@example.com:{path_with_namespace}.git", "http_url": f"{web_url}.git"}
    return {
        "object_kind": "tag_push" if tag else "push", "event_name": "tag_push" if tag else "push",
        "before": before, "after": after, "ref": ref, "ref_protected": True,
        "checkout_sha": None if deleted else after, "message": None, "user_id": 4, "user_name": "John Smith",
        "user_username": "jsmith", "user_email": "john@example.com", "user_avatar": None, "project_id": 15,
        "project": project, "commits": [] if deleted else [commit], "total_commits_count": 0 if deleted else 1,
        "push_options": {},
        "repository": {"name": name, "url": project["url"], "description": "", "homepage": web_url,
                       "git_http_url": project["git_http_url"], "git_ssh_url": project["git_ssh_url"],
                       "visibility_level": 0},
    }


def gitlab_headers(token: str | None, *, event: str = "Push Hook", delivery: str | None = None) -> dict[str, str]:
    """The headers GitLab sends; ``token``: the webhook's secret token (None: none set)."""
    headers = {"Content-Type": "application/json", "User-Agent": "GitLab/17.5.0", "X-Gitlab-Event": event,
               "X-Gitlab-Instance": "https://gitlab.example.com", "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
               "X-Gitlab-Event-UUID": str(uuid.uuid4()), "Idempotency-Key": delivery or str(uuid.uuid4())}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return headers


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()
