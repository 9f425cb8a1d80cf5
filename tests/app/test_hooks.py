"""Build on push at the door (app/hooks.py): signed pushes queue one build-only launch, refusals queue nothing.

The app comes from its factory with a real Redis; what was queued is read back from Redis
itself (kombu's ``launch`` list, where a worker would find it), so "nothing was queued"
means no message exists, not that a function was not called.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app, keys, launches
from app.extensions import redis_client
from app.redis_server import EmbeddedRedis
from tasks import chain
from tasks.steps.check_registry import check_registry
from tasks.steps.resolve_ref import resolve_ref
from tests.conftest import GitServer
from tests.hook_payloads import ZERO, encode, github_headers, github_ping, github_push, gitlab_headers, gitlab_push
from tests.tasks.steps.conftest import Store

SECRET = "hook-secret-0123456789"
OTHER_SECRET = "another-secret-0123456789"
TOKEN = "prebuild-token-" + "t" * 24
SHA = "a" * 40
REPO = "https://github.com/org/repo"


@pytest.fixture
def store(redis_server: EmbeddedRedis) -> redis_lib.Redis:
    client = redis_lib.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()  # (each xdist worker has its own Redis): what is queued below is this test's
    return client


def make_app(redis_server: EmbeddedRedis, **settings: Any) -> Flask:
    return create_app({"redis_url": redis_server.url, "launcher": "bench", "webhook_secret": SECRET,
                       "prebuild_tokens": {"ci": TOKEN}, "abandon_timeout": 600, **settings})


@pytest.fixture
def hook_app(redis_server: EmbeddedRedis, store: redis_lib.Redis) -> Flask:
    return make_app(redis_server)


def queued(store: redis_lib.Redis) -> list[dict[str, Any]]:
    """The launches waiting in the launch queue, as a worker would receive them."""
    found = []
    for raw in store.lrange("launch", 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == chain.RESOLVE_REF
        found.append(json.loads(base64.b64decode(message["body"]))[0][0])
    return found


def push_github(client: Any, payload: dict[str, Any], secret: str | None = SECRET, **kwargs: Any) -> Any:
    body = encode(payload)
    return client.post("/hooks/github", data=body, headers=github_headers(body, secret, **kwargs))


def gh_payload(**kwargs: Any) -> dict[str, Any]:
    return github_push(**{"html_url": REPO, "clone_url": f"{REPO}.git", "full_name": "org/repo", "after": SHA,
                          **kwargs})


# --- a push builds -----------------------------------------------------------------------------------

def test_a_signed_github_push_queues_a_build_only_launch_of_the_commit(hook_app: Flask,
                                                                       store: redis_lib.Redis) -> None:
    answer = push_github(hook_app.test_client(), gh_payload())
    assert answer.status_code == 202, answer.json
    [launch] = queued(store)
    assert (launch["provider"], launch["spec"], launch["build_only"], launch["trigger"]) == \
        ("gh", f"org/repo/{SHA}", True, "push")
    assert launch["pool_specs"] == ["gh/org/repo/main", "gh/org/repo/HEAD"], "the links the push updates"
    assert answer.json["launch_id"] == launch["id"]
    assert answer.json["log_url"] == f"http://localhost/logs/gh/org/repo/{SHA}"
    assert answer.json["events_url"] == f"http://localhost/build/gh/org/repo/{SHA}?lastEventId={launch['id']}_0-0"
    # nobody reads a push's launch, by design: the abandon sweep must not cancel its build
    assert store.zscore(keys.LAUNCHES_ACTIVE(), launch["id"]) is None
    assert store.get(keys.LAUNCH_REQUEST(launch["id"])) == f"gh/org/repo/{SHA}", "resumable like any launch"


def test_a_signed_gitlab_push_builds_the_project_on_gitlab(hook_app: Flask, store: redis_lib.Redis) -> None:
    payload = gitlab_push(web_url="https://gitlab.com/group/sub/project", path_with_namespace="group/sub/project",
                          after=SHA)
    answer = hook_app.test_client().post("/hooks/gitlab", data=encode(payload), headers=gitlab_headers(SECRET))
    assert answer.status_code == 202, answer.json
    [launch] = queued(store)
    assert (launch["provider"], launch["spec"]) == ("gl", f"group%2Fsub%2Fproject/{SHA}")
    assert launch["pool_specs"] == ["gl/group%2Fsub%2Fproject/main", "gl/group%2Fsub%2Fproject/HEAD"]


def test_a_push_from_another_host_builds_its_clone_url_with_the_git_provider(hook_app: Flask,
                                                                            store: redis_lib.Redis) -> None:
    url = "http://127.0.0.1:9/org/repo"  # a GitHub Enterprise server (never contacted here)
    answer = push_github(hook_app.test_client(),
                         github_push(html_url=url, clone_url=f"{url}.git", full_name="org/repo", after=SHA))
    assert answer.status_code == 202, answer.json
    quoted = urllib.parse.quote(f"{url}.git", safe="")
    [launch] = queued(store)
    assert (launch["provider"], launch["spec"]) == ("git", f"{quoted}/{SHA}")
    assert launch["pool_specs"] == [f"git/{quoted}/main", f"git/{quoted}/HEAD"]


def test_a_tag_builds_only_with_webhook_tags(redis_server: EmbeddedRedis, store: redis_lib.Redis) -> None:
    payload = gh_payload(ref="refs/tags/v1.0")
    off = push_github(make_app(redis_server).test_client(), payload)
    assert (off.status_code, off.json["ignored"]) == (200, True) and "webhook_tags" in off.json["message"]
    assert queued(store) == []
    on = push_github(make_app(redis_server, webhook_tags=True).test_client(), payload)
    assert on.status_code == 202
    [launch] = queued(store)
    assert launch["pool_specs"] == ["gh/org/repo/v1.0"]


def test_ping_answers_200_and_queues_nothing(hook_app: Flask, store: redis_lib.Redis) -> None:
    body = encode(github_ping(html_url=REPO, full_name="org/repo"))
    answer = hook_app.test_client().post("/hooks/github", data=body, headers=github_headers(body, SECRET, event="ping"))
    assert answer.status_code == 200 and "pong" in answer.json["message"]
    assert queued(store) == []


# --- nothing to build: 200, nothing queued --------------------------------------------------------

@pytest.mark.parametrize(("payload", "event", "why"), [
    (gh_payload(deleted=True), "push", "deleted"),
    (gh_payload(ref="refs/heads/feature"), "push", "default branch"),
    (gh_payload(), "issues", "only push events"),
], ids=["branch-deleted", "other-branch", "other-event"])
def test_pushes_that_name_no_link_build_nothing(hook_app: Flask, store: redis_lib.Redis, payload: dict[str, Any],
                                                event: str, why: str) -> None:
    answer = push_github(hook_app.test_client(), payload, event=event)
    assert (answer.status_code, answer.json["ignored"]) == (200, True) and why in answer.json["message"]
    assert queued(store) == []


def test_a_gitlab_branch_deletion_builds_nothing(hook_app: Flask, store: redis_lib.Redis) -> None:
    payload = gitlab_push(web_url="https://gitlab.com/group/project", path_with_namespace="group/project", after=ZERO)
    answer = hook_app.test_client().post("/hooks/gitlab", data=encode(payload), headers=gitlab_headers(SECRET))
    assert (answer.status_code, answer.json["ignored"]) == (200, True)
    assert queued(store) == []


# --- refusals: the one error format, nothing queued -------------------------------------------------

def _refused(answer: Any, status: int, words: str, store: redis_lib.Redis) -> None:
    assert answer.status_code == status, answer.json
    assert set(answer.json) >= {"message", "status_code"} and answer.json["status_code"] == status
    assert words in answer.json["message"]
    assert SECRET not in answer.get_data(as_text=True)
    assert queued(store) == [], "a refusal queues nothing"
    assert not store.keys("bindery:launch:*"), "and records no launch"


def test_a_missing_signature_is_401(hook_app: Flask, store: redis_lib.Redis) -> None:
    _refused(push_github(hook_app.test_client(), gh_payload(), secret=None), 401, "X-Hub-Signature-256", store)


def test_a_signature_with_another_secret_is_401(hook_app: Flask, store: redis_lib.Redis) -> None:
    _refused(push_github(hook_app.test_client(), gh_payload(), secret=OTHER_SECRET), 401, "does not match", store)


def test_a_body_changed_after_signing_is_401(hook_app: Flask, store: redis_lib.Redis) -> None:
    body = encode(gh_payload())
    headers = github_headers(body, SECRET)
    forged = body.replace(SHA.encode(), b"b" * 40)
    _refused(hook_app.test_client().post("/hooks/github", data=forged, headers=headers), 401, "does not match", store)


@pytest.mark.parametrize("token", [None, OTHER_SECRET], ids=["missing", "wrong"])
def test_a_gitlab_push_without_the_right_token_is_401(hook_app: Flask, store: redis_lib.Redis,
                                                      token: str | None) -> None:
    payload = gitlab_push(web_url="https://gitlab.com/group/project", path_with_namespace="group/project", after=SHA)
    answer = hook_app.test_client().post("/hooks/gitlab", data=encode(payload), headers=gitlab_headers(token))
    _refused(answer, 401, "X-Gitlab-Token", store)


@pytest.mark.parametrize(("settings", "words"), [
    ({"banned_specs": {"gh": ["^org/"]}}, "banned"),
    ({"allowed_specs": {"gh": ["^other/"]}}, "not among the specs"),
    ({"webhook_repositories": {"https://github.com/org/another": None}}, "not among the repositories"),
], ids=["banned", "not-allowed", "not-opted-in"])
def test_a_repository_the_operator_refuses_is_403(redis_server: EmbeddedRedis, store: redis_lib.Redis,
                                                  settings: dict[str, Any], words: str) -> None:
    _refused(push_github(make_app(redis_server, **settings).test_client(), gh_payload()), 403, words, store)


def test_an_opted_in_repository_uses_its_own_secret(redis_server: EmbeddedRedis, store: redis_lib.Redis) -> None:
    app = make_app(redis_server, webhook_repositories={f"{REPO}.git": OTHER_SECRET})  # written as a clone URL
    _refused(push_github(app.test_client(), gh_payload(), secret=SECRET), 401, "does not match", store)
    assert push_github(app.test_client(), gh_payload(), secret=OTHER_SECRET).status_code == 202


def test_more_pushes_than_the_limit_are_429_with_retry_after(redis_server: EmbeddedRedis,
                                                            store: redis_lib.Redis) -> None:
    client = make_app(redis_server, webhook_rate_limit=1).test_client()
    assert push_github(client, gh_payload()).status_code == 202
    [first] = queued(store)
    answer = push_github(client, gh_payload(after="b" * 40), delivery="second-delivery")
    assert answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 1
    assert "pushes of https://github.com/org/repo" in answer.json["message"]
    assert [launch["id"] for launch in queued(store)] == [first["id"]], "the refused push queued nothing"
    # refused, so not remembered: the same delivery again (GitHub's "Redeliver") is judged afresh
    again = make_app(redis_server, webhook_rate_limit=5).test_client()
    assert push_github(again, gh_payload(after="b" * 40), delivery="second-delivery").status_code == 202


@pytest.mark.parametrize("changes", [
    {"full_name": "org/another"},  # GitHub: the repository built is the full name
    {"clone_url": "http://127.0.0.1:9/org/another.git"},  # another host: the clone URL
], ids=["github", "other-host"])
def test_a_push_naming_two_repositories_is_400(redis_server: EmbeddedRedis, store: redis_lib.Redis,
                                               changes: dict[str, str]) -> None:
    """A secret of one repository must not build another (webhook_repositories gives each its own)."""
    url = REPO if "full_name" in changes else "http://127.0.0.1:9/org/repo"
    payload = github_push(html_url=url, clone_url=f"{url}.git", full_name="org/repo", after=SHA)
    payload["repository"].update(changes)
    app = make_app(redis_server, webhook_repositories={url: OTHER_SECRET})
    _refused(push_github(app.test_client(), payload, secret=OTHER_SECRET), 400, "names two repositories", store)


def test_a_body_over_the_limit_is_413(redis_server: EmbeddedRedis, store: redis_lib.Redis) -> None:
    payload = gh_payload()
    payload["padding"] = "x" * 5000
    _refused(push_github(make_app(redis_server, webhook_max_body_bytes=4096).test_client(), payload), 413,
             "at most 4096", store)


@pytest.mark.parametrize(("body", "words"), [
    (b"{not json", "not a JSON payload"),
    (b"[1, 2]", "not a JSON object"),
    (encode({**gh_payload(), "after": "not-a-sha"}), "40-character"),
    (encode({key: value for key, value in gh_payload().items() if key != "ref"}), "'ref'"),
], ids=["not-json", "not-object", "bad-sha", "no-ref"])
def test_a_malformed_payload_is_400(hook_app: Flask, store: redis_lib.Redis, body: bytes, words: str) -> None:
    answer = hook_app.test_client().post("/hooks/github", data=body, headers=github_headers(body, SECRET))
    _refused(answer, 400, words, store)


def test_without_a_secret_the_hooks_are_404(redis_server: EmbeddedRedis, store: redis_lib.Redis) -> None:
    client = make_app(redis_server, webhook_secret=None).test_client()
    _refused(push_github(client, gh_payload()), 404, "not enabled", store)


def test_secrets_and_signatures_are_never_logged(hook_app: Flask, store: redis_lib.Redis,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    body = encode(gh_payload())
    headers = github_headers(body, SECRET)
    with caplog.at_level(logging.DEBUG):
        push_github(hook_app.test_client(), gh_payload(), secret=OTHER_SECRET)
        hook_app.test_client().post("/hooks/github", data=body, headers=headers)
    assert "org/repo" in caplog.text
    for text in (SECRET, OTHER_SECRET, headers["X-Hub-Signature-256"].split("=", 1)[1]):
        assert text not in caplog.text


# --- once per push ----------------------------------------------------------------------------------

def test_two_deliveries_of_one_push_build_once(hook_app: Flask, store: redis_lib.Redis) -> None:
    client = hook_app.test_client()
    first = push_github(client, gh_payload(), delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    second = push_github(client, gh_payload(), delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json["ignored"] and "received before" in second.json["message"]
    assert len(queued(store)) == 1
    assert store.ttl(keys.HOOK_DELIVERY("github", keys.digest("72d3162e-cc78-11e3-81ab-4c9367dc0958"))) > 3600


def test_two_gitlab_deliveries_with_one_idempotency_key_build_once(hook_app: Flask, store: redis_lib.Redis) -> None:
    payload = gitlab_push(web_url="https://gitlab.com/group/project", path_with_namespace="group/project", after=SHA)
    client = hook_app.test_client()
    answers = [client.post("/hooks/gitlab", data=encode(payload), headers=gitlab_headers(SECRET, delivery="k-1"))
               for _ in range(2)]
    assert [answer.status_code for answer in answers] == [202, 200]
    assert len(queued(store)) == 1


def test_concurrent_deliveries_of_one_push_build_once(hook_app: Flask, store: redis_lib.Redis) -> None:
    statuses: list[int] = []
    start = threading.Barrier(6)

    def deliver() -> None:
        client = hook_app.test_client()
        start.wait()
        statuses.append(push_github(client, gh_payload(), delivery="same-delivery").status_code)

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200] * 5 + [202]
    assert len(queued(store)) == 1


def test_a_push_racing_a_click_of_the_same_commit_builds_once(redis_server: EmbeddedRedis, store: redis_lib.Redis,
                                                              git_server: GitServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Both launches go the whole way to the registry check at once; the build lock lets one build."""
    clone_url, sha = git_server.make_repo("FROM scratch\n")
    app = make_app(redis_server, abandon_timeout=0)
    payload = github_push(html_url=clone_url.removesuffix(".git"), clone_url=clone_url, full_name="org/repo", after=sha)
    assert push_github(app.test_client(), payload).status_code == 202
    with app.test_request_context():  # the click: what GET /build queues
        launches.start("git", f"{urllib.parse.quote(clone_url, safe='')}/main", build_only=False,
                       origin="http://localhost/")
    push_launch, click_launch = sorted(queued(store), key=lambda launch: launch["created"])
    assert push_launch["trigger"] == "push" and "trigger" not in click_launch

    resolved: list[dict[str, Any]] = []
    decisions: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(chain, "resolved", resolved.append)
    monkeypatch.setattr(chain, "build_needed", lambda launch, **kw: decisions.append(("build", launch)))
    monkeypatch.setattr(chain, "build_elsewhere", lambda launch: decisions.append(("follow", launch)))
    empty = Store()
    monkeypatch.setattr("tasks.backends.image_store", lambda config: empty)
    with app.app_context():
        resolve_ref(push_launch)
        resolve_ref(click_launch)  # git ls-remote against the loopback server: main is the pushed commit
    assert resolved[0]["image"] == resolved[1]["image"], "the push and the click name one image"

    start = threading.Barrier(2)

    def check(launch: dict[str, Any]) -> None:
        with app.app_context():
            start.wait()
            check_registry(launch)

    threads = [threading.Thread(target=check, args=(launch,)) for launch in resolved]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(kind for kind, _ in decisions) == ["build", "follow"], "one build, the other launch follows it"
    with app.app_context():
        builder = next(launch for kind, launch in decisions if kind == "build")
        redis_client.client.delete(keys.BUILD_LOCK(keys.digest(builder["image"])))


# --- the API -----------------------------------------------------------------------------------------

def test_the_prebuild_api_queues_a_build_with_a_token(hook_app: Flask, store: redis_lib.Redis) -> None:
    client = hook_app.test_client()
    answer = client.post("/api/prebuild/gh/org/repo/main", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 202, answer.json
    [launch] = queued(store)
    assert (launch["spec"], launch["trigger"], launch["pool_specs"]) == ("org/repo/main", "api", ["gh/org/repo/main"])
    assert answer.json["log_url"] is None, "a branch's commit is known once resolved: follow events_url"
    by_commit = client.post(f"/api/prebuild/gh/org/repo/{SHA}", headers={"Authorization": f"token {TOKEN}"})
    assert by_commit.json["log_url"] == f"http://localhost/logs/gh/org/repo/{SHA}"


@pytest.mark.parametrize(("headers", "status", "words"), [
    ({}, 401, "API token is needed"),
    ({"Authorization": f"Bearer {OTHER_SECRET}{OTHER_SECRET}"}, 401, "not valid"),
    ({"Authorization": f"Basic {TOKEN}"}, 401, "API token is needed"),
], ids=["missing", "wrong", "other-scheme"])
def test_the_prebuild_api_refuses_without_a_valid_token(hook_app: Flask, store: redis_lib.Redis,
                                                        headers: dict[str, str], status: int, words: str) -> None:
    _refused(hook_app.test_client().post("/api/prebuild/gh/org/repo/main", headers=headers), status, words, store)


def test_the_prebuild_api_follows_the_operator_s_rules(redis_server: EmbeddedRedis, store: redis_lib.Redis) -> None:
    client = make_app(redis_server, banned_specs={"gh": ["^org/"]}).test_client()
    _refused(client.post("/api/prebuild/gh/org/repo/main", headers={"Authorization": f"Bearer {TOKEN}"}), 403,
             "banned", store)
    off = make_app(redis_server, prebuild_tokens={}).test_client()
    _refused(off.post("/api/prebuild/gh/org/repo/main", headers={"Authorization": f"Bearer {TOKEN}"}), 404,
             "not enabled", store)


def test_the_events_url_follows_the_launch(hook_app: Flask, store: redis_lib.Redis) -> None:
    answer = push_github(hook_app.test_client(), gh_payload())
    url = urllib.parse.urlsplit(answer.json["events_url"])
    response = hook_app.test_client().get(f"{url.path}?{url.query}", headers={"Accept": "text/event-stream"},
                                          buffered=False)
    chunks: Iterator[bytes] = response.response  # type: ignore[assignment]
    text = ""
    for chunk in chunks:
        text += chunk.decode()
        if "data:" in text:
            break
    response.close()
    assert '"phase": "waiting"' in text and answer.json["launch_id"] in text


# --- whatever arrives: an answer, never a 500 ---------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=50),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner,
                                                                                max_size=4),
                    max_leaves=12)
#: A real push with some fields replaced by anything: signed with the right secret, so every check runs.
MUTATED = st.builds(lambda payload, changes: {**payload, **changes}, st.sampled_from([
    gh_payload(), gh_payload(ref="refs/tags/v1"), gh_payload(deleted=True),
    github_push(html_url="http://127.0.0.1:9/o/r", clone_url="http://127.0.0.1:9/o/r.git", full_name="o/r", after=SHA),
    gitlab_push(web_url="https://gitlab.com/g/p", path_with_namespace="g/p", after=SHA)]),
    st.dictionaries(st.sampled_from(["ref", "after", "deleted", "repository", "project", "object_kind", "x"]), JSON,
                    max_size=3))


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(payload=MUTATED | st.dictionaries(st.text(max_size=12), JSON, max_size=4),
       host=st.sampled_from(["github", "gitlab"]), event=st.sampled_from(["push", "ping", "Push Hook", "x", ""]))
def test_any_signed_payload_gets_an_answer_never_a_500(hook_app: Flask, store: redis_lib.Redis,
                                                       payload: dict[str, Any], host: str, event: str) -> None:
    body = encode(payload)
    headers = github_headers(body, SECRET, event=event) if host == "github" else gitlab_headers(SECRET, event=event)
    answer = hook_app.test_client().post(f"/hooks/{host}", data=body, headers=headers)
    assert answer.status_code in (200, 202, 400, 403, 404, 414), (answer.status_code, answer.get_data(as_text=True))
    assert set(answer.json) >= {"message"}
    store.delete("launch")


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=300), content_type=st.sampled_from(["application/json",
                                                                    "application/x-www-form-urlencoded", ""]),
       signature=st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=80))
def test_any_body_and_signature_are_refused_cleanly(hook_app: Flask, store: redis_lib.Redis, body: bytes,
                                                    content_type: str, signature: str) -> None:
    headers = {"Content-Type": content_type, "X-GitHub-Event": "push", "X-Hub-Signature-256": signature}
    answer = hook_app.test_client().post("/hooks/github", data=body, headers=headers)
    assert answer.status_code in (400, 401, 403), (answer.status_code, answer.get_data(as_text=True))
    assert queued(store) == []
