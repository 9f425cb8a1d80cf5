"""Every API provider prefix launches end to end through one real Bindery, and mybinder.org links parse.

Real: gunicorn (gevent), the Celery workers, an embedded Redis, the reference
Registry v2 on loopback, repo2docker 2024.7.0 building through the Podman engine,
and Jupyter servers in containers answering at the end.

Replayed (these machines reach no GitHub, GitLab, DOI resolver or archive): one
loopback server plays every host.  It answers the API paths with the services'
recorded real responses (tests/providers/recordings), with the commit ids changed
to those of the repositories it really serves, and it serves those repositories
with the real ``git http-backend`` behind HTTP Basic auth, at the paths the
providers derive (GitHub Enterprise / self-hosted GitLab style), so the gh, gl and
gist launches are real private-repository builds with the configured tokens.

Archive providers (zenodo, figshare, dataverse, hydroshare, ckan, swh): repo2docker's
content providers download from fixed public hosts that cannot be reached here, so
no build can run.  For each, the test resolves the spec itself (against the same
replay) and pushes a ready Jupyter image into the loopback registry under the exact
name Bindery computes for that resolved spec; the launch then finds it and starts
it for real (resolve -> check_registry -> launch).
"""

from __future__ import annotations

import copy
import json
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker
import pytest
import requests

from app.config import load_config
from providers import get_provider
from providers.base import image_name
from tests.conftest import JUPYTER_IMAGE, LOOPBACK_ALLOWED, REGISTRY_PORT
from tests.git_http import SmartGitServer, make_bare_repo
from tests.providers.conftest import RECORDINGS
from tests.stack import Stack, StackFactory, collect, run_prefix

pytestmark = [pytest.mark.integration, pytest.mark.engine]

GH_TOKEN = "ghp_e2eSecretToken0123456789"
GL_TOKEN = "glpat-e2eSecretToken01234"
GIST = "8a1b6d1a5c3a4d0f9e2b7c6d5e4f3a2b"
DOIS = {"zenodo": "10.5281/zenodo.3242074", "figshare": "10.6084/m9.figshare.9782777.v1",
        "dataverse": "10.7910/DVN/TJCLKP"}
HYDROSHARE = "b8f6eae9d89241cf8b5904033460af61"
SWHID = "swh:1:rev:" + "1" * 40


def recording(name: str) -> dict[str, Any]:
    return json.loads((RECORDINGS / f"{name}.json").read_text(encoding="utf-8"))


@dataclass
class Host:
    """The replaying host, its repositories' shas, and the settings that point Bindery at it."""

    server: SmartGitServer
    shas: dict[str, str]
    settings: dict[str, Any]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    root = tmp_path_factory.mktemp("githost")
    dockerfile = f"FROM {JUPYTER_IMAGE}\nRUN echo {uuid.uuid4().hex} > /home/jovyan/.build-id\n"
    shas = {  # one Dockerfile for all three: the first build pays, the others reuse its layers
        "gh": make_bare_repo(root / "octo-org" / "private-repo", {"Dockerfile": dockerfile}),
        "gl": make_bare_repo(root / "group" / "sub" / "project.git", {"Dockerfile": dockerfile}),
        "gist": make_bare_repo(root / "gist" / "octocat" / f"{GIST}.git", {"Dockerfile": dockerfile}),
    }
    server = SmartGitServer(root, auth=[(GH_TOKEN, "x-oauth-basic"), ("binderhub", GL_TOKEN)])
    url = server.url
    replies = server.replies
    commit = recording("github_commit_200")
    commit["body"]["sha"] = shas["gh"]
    replies["/api/v3/repos/octo-org/private-repo/commits/main"] = commit
    gl_commit = recording("gitlab_commit_200")
    gl_commit["body"]["id"] = shas["gl"]
    replies["/api/v4/projects/group%2Fsub%2Fproject/repository/commits/main"] = gl_commit
    gist = recording("github_gist_200")
    gist["body"]["id"] = GIST
    gist["body"]["history"][0]["version"] = shas["gist"]
    replies[f"/api/v3/gists/{GIST}"] = gist
    for prefix, name in (("zenodo", "doi_zenodo_302"), ("figshare", "doi_figshare_302")):
        replies[f"/doi/{DOIS[prefix]}"] = recording(name)
    to_dataverse = copy.deepcopy(recording("doi_zenodo_302"))
    to_dataverse["headers"]["location"] = f"{url}/citation?persistentId=doi:{DOIS['dataverse']}"
    replies[f"/doi/{DOIS['dataverse']}"] = to_dataverse
    replies["/api/datasets/:persistentId?persistentId=doi%3A10.7910%2FDVN%2FTJCLKP"] = recording(
        "dataverse_dataset_200")
    replies[f"/hsapi/resource/{HYDROSHARE}/scimeta/elements"] = recording("hydroshare_scimeta_200")
    replies["/ckan/api/3/action/package_show?id=sample-dataset-1"] = recording("ckan_package_show_200")
    settings = {
        **LOOPBACK_ALLOWED,
        "github_api_url": f"{url}/api/v3", "github_url": url, "github_token": GH_TOKEN,
        "gitlab_url": url, "gitlab_token": GL_TOKEN, "doi_resolver_url": f"{url}/doi", "hydroshare_url": url,
    }
    with server:
        yield Host(server, shas, settings)


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory, host: Host) -> Stack:
    return make_module_stack("providers-stack", {
        **host.settings,
        "image_prefix": run_prefix(f"127.0.0.1:{REGISTRY_PORT}/bindery-prov-"),
        "keepalive_interval": 1,
        "launch_timeout": 180,
    })


def config_of(stack: Stack) -> dict[str, Any]:
    """The settings the stack runs with, as its processes load them."""
    return load_config({k: v for k, v in stack.settings.items()}, environ={})


def launch_id_of(events: list[tuple[str | None, dict[str, Any]]]) -> str:
    ids = {event_id.split("_")[0] for event_id, _ in events if event_id}
    assert len(ids) == 1, ids
    return ids.pop()


def assert_ready_and_answering(events: list[tuple[str | None, dict[str, Any]]]) -> dict[str, Any]:
    phases = [data["phase"] for _, data in events]
    assert phases[-1] == "ready", events[-3:]
    ready = events[-1][1]
    response = requests.get(f"{ready['url']}api", params={"token": ready["token"]}, timeout=10)
    assert response.status_code == 200, response.text
    assert "version" in response.json()
    return ready


@pytest.mark.parametrize("prefix, spec, repo_url", [
    ("gh", "octo-org/private-repo/main", "{url}/octo-org/private-repo"),
    ("gl", "group%2Fsub%2Fproject/main", "{url}/group/sub/project.git"),
    ("gist", f"octocat/{GIST}/HEAD", f"{{url}}/gist/octocat/{GIST}.git"),
])
def test_git_host_providers_build_private_repositories_and_launch(
        stack: Stack, host: Host, launched_containers: list[str], prefix: str, spec: str, repo_url: str) -> None:
    events = collect(f"{stack.url}/build/{prefix}/{spec}", timeout=900)
    launched_containers.append(launch_id_of(events))
    ready = assert_ready_and_answering(events)
    phases = [data["phase"] for _, data in events]
    assert "building" in phases or "built" in phases, phases
    assert ready["image"].endswith(f":{host.shas[prefix]}")
    assert ready["repo_url"] == repo_url.format(url=host.server.url)
    text = json.dumps(events) + stack.log("build") + stack.log("launch") + stack.log("web")
    assert GH_TOKEN not in text and GL_TOKEN not in text, "a token leaked into an event or a log"
    cloned = [path for path, sent in host.server.requests if "git-upload-pack" in path and sent]
    assert cloned, "repo2docker cloned with credentials"


ARCHIVES = [
    ("zenodo", DOIS["zenodo"]),
    ("figshare", DOIS["figshare"]),
    ("dataverse", DOIS["dataverse"]),
    ("hydroshare", HYDROSHARE),
    ("ckan", "{escaped_url}%2Fckan%2Fdataset%2Fsample-dataset-1"),
    ("swh", SWHID),
]


@pytest.mark.parametrize("prefix, spec", ARCHIVES, ids=[prefix for prefix, _ in ARCHIVES])
def test_archive_providers_resolve_through_replays_and_launch(
        stack: Stack, host: Host, engine: docker.DockerClient, launched_containers: list[str],
        prefix: str, spec: str) -> None:
    spec = spec.format(escaped_url=urllib.parse.quote(host.server.url, safe=""))
    config = config_of(stack)
    provider = get_provider(prefix, spec, config)
    found = provider.resolve()
    image = image_name(config["image_prefix"], found.build_slug, found.ref)
    repository, tag = image.rsplit(":", 1)
    engine.images.get(JUPYTER_IMAGE).tag(repository, tag)
    try:
        for line in engine.images.push(repository, tag=tag, stream=True, decode=True):
            assert "error" not in line, line
    finally:
        engine.images.remove(image, noprune=True)
    events = collect(f"{stack.url}/build/{prefix}/{spec}", timeout=300)
    launched_containers.append(launch_id_of(events))
    # the steps' events; the launcher's own launching lines (a slow server's "Waiting for the server
    # to answer", the word that this bare image has no notebook UI) come between
    phases = [data["phase"] for _, data in events
              if data["phase"] != "launching" or data["message"] == "Launching server...\n"]
    assert phases == ["waiting", "built", "launching", "ready"], events
    ready = assert_ready_and_answering(events)
    assert ready["image"] == image


# --- links that work on mybinder.org work unchanged ---------------------------------------------

MYBINDER_LINKS = [  # (prefix, spec as in a mybinder.org /v2/ link, what it names)
    ("gh", "jupyterhub/binderhub/HEAD", "https://github.com/jupyterhub/binderhub"),
    ("gh", "binder-examples/requirements/master", "https://github.com/binder-examples/requirements"),
    ("gl", "group%2Fsubgroup%2Fproject/main", "https://gitlab.com/group/subgroup/project.git"),
    ("git", "https%3A%2F%2Fgithub.com%2Fbinder-examples%2Frequirements.git/HEAD",
     "https://github.com/binder-examples/requirements.git"),
    ("zenodo", "10.5281/zenodo.3242074", "https://doi.org/10.5281/zenodo.3242074"),
    ("figshare", "10.6084/m9.figshare.9782777.v1", "https://doi.org/10.6084/m9.figshare.9782777.v1"),
    ("hydroshare", "b8f6eae9d89241cf8b5904033460af61",
     "https://www.hydroshare.org/resource/b8f6eae9d89241cf8b5904033460af61"),
    ("dataverse", "10.7910/DVN/TJCLKP", "https://doi.org/10.7910/DVN/TJCLKP"),
    ("ckan", "https%3A%2F%2Fdemo.ckan.org%2Fdataset%2Fsample-dataset-1",
     "https://demo.ckan.org/dataset/sample-dataset-1"),
    ("gist", "octocat/6cad326836d38bd3a7ae/HEAD", "https://gist.github.com/octocat/6cad326836d38bd3a7ae.git"),
]


@pytest.mark.parametrize("prefix, spec, names", MYBINDER_LINKS, ids=[f"{p}:{s[:30]}" for p, s, _ in MYBINDER_LINKS])
def test_mybinder_links_parse_unchanged(prefix: str, spec: str, names: str) -> None:
    """The spec of each mybinder.org link form parses with default settings and names the same thing."""
    provider = get_provider(prefix, spec, load_config({}, environ={}))
    assert provider.repo_url() == names


@pytest.mark.parametrize("prefix, spec", [
    ("gh", "octo-org/private-repo/main"), ("gl", "group%2Fsub%2Fproject/main"), ("gist", f"octocat/{GIST}/HEAD"),
    *ARCHIVES,
])
def test_mybinder_v2_pages_open_here(stack: Stack, host: Host, prefix: str, spec: str) -> None:
    """/v2/<prefix>/<spec> (the page a mybinder.org link opens) is served for every spec launched above
    through /build/ (the event stream the page follows)."""
    spec = spec.format(escaped_url=urllib.parse.quote(host.server.url, safe=""))
    page = requests.get(f"{stack.url}/v2/{prefix}/{spec}", timeout=10)
    assert page.status_code == 200, page.text[:500]
    assert f"/build/{prefix}/" in page.text or spec in page.text
