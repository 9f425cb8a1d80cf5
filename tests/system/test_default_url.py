"""What a person sees after a launch, in real headless Chromium against a real Bindery.

Real: gunicorn + Celery workers + embedded Redis (tests.stack.Stack), the reference registry,
repo2docker building through the Podman engine FROM localhost/bindery-jupyterlab:bookworm
(JupyterLab 4 and Notebook 7 from PyPI) or the bare Jupyter Server image, git over HTTP on
loopback, Debian's Chromium. The tests look at the page itself: its title and the repository's
files on it, not only at the server's API.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tasks.backends.docker_launcher import INSTANCE
from tests.conftest import JUPYTER_IMAGE, GitServer
from tests.stack import Stack, StackFactory, launch_ports
from tests.templates.conftest import ARTIFACTS, VIEWPORT, screenshot

pytestmark = [pytest.mark.integration, pytest.mark.engine]

LAB_IMAGE = "localhost/bindery-jupyterlab:bookworm"
BUILD_TIMEOUT_MS = 300_000
UI_TIMEOUT_MS = 90_000


def SERVER(url: str) -> bool:
    """Whether ``url`` is on a server this worker's Stack launched (its launch ports, tests/stack.py)."""
    low, high = launch_ports()
    parts = urllib.parse.urlsplit(url)
    return parts.hostname == "127.0.0.1" and parts.port is not None and low <= parts.port <= high


def wait_for_launch(page: Any, selector: str) -> None:
    """Wait for ``selector`` on the loading page; a launch that failed instead says why at once."""
    page.wait_for_selector(f"{selector}, #error:not([hidden])", timeout=BUILD_TIMEOUT_MS)
    assert page.is_hidden("#error"), page.text_content("#error")


NOTEBOOK = {"cells": [{"cell_type": "markdown", "id": "c1", "metadata": {},
                       "source": ["# Hello from Bindery\n", "This notebook came with the repository."]}],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def make_repo(git_server: GitServer, base: str, files: dict[str, str]) -> str:
    """A repository whose image copies its files into the home directory; returns its clone URL."""
    name = f"repo-{uuid.uuid4().hex[:10]}"
    work, bare = git_server.root / f"{name}-work", git_server.root / f"{name}.git"
    work.mkdir()
    (work / "Dockerfile").write_text(f"FROM {base}\nCOPY --chown=1000:1000 . /home/jovyan/\n"
                                     f"RUN echo build-{uuid.uuid4().hex}\n")
    for path, text in files.items():
        (work / path).write_text(text)
    git = ["git", "-c", "user.name=Bindery Tests", "-c", "user.email=tests@bindery.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "add", "."], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-q", "-m", "test repo"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    return f"{git_server.url}/{name}.git"


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory, engine: docker.DockerClient) -> Iterator[Stack]:
    try:
        engine.images.get(LAB_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{LAB_IMAGE} is missing: `make test` builds it (scripts/base-image.sh)")
    running = make_module_stack("stack", {"keepalive_interval": 1, "launch_timeout": 180})
    (ARTIFACTS / "default-url-timings.txt").unlink(missing_ok=True)
    yield running
    running.stop()  # (before its servers are removed; the factory's stop at the module's end finds it stopped)
    # exactly this stack's servers (its instance label), whatever the tests left running
    mine = f"{INSTANCE}={running.settings['instance_name']}"
    for container in engine.containers.list(ignore_removed=True, all=True, filters={"label": [mine]}):
        container.remove(force=True)


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    """Like tests/templates/conftest.py's page, but JavaScript errors count only on Bindery's own
    pages: Notebook 7's file tree throws one of its own ("reading 'schema'") and still works."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)) if page.url.startswith(stack.url) else None)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on Bindery's pages: {errors}"


@pytest.fixture(scope="module")
def lab_repo(git_server: GitServer) -> str:
    """One repository for the JupyterLab tests: the first launch builds, the others reuse the image."""
    return make_repo(git_server, LAB_IMAGE, {"hello.ipynb": json.dumps(NOTEBOOK),
                                             "README.md": "# A Bindery test repository\n"})


def loading_url(stack: Stack, repo_url: str, query: str = "") -> str:
    return f"{stack.url}/v2/git/{urllib.parse.quote(repo_url, safe='')}/main{query}"


def launch_from_landing_page(page: Any, stack: Stack, repo_url: str, file: str = "") -> float:
    """Fill in the landing page as a person does and press Launch; returns the click's time."""
    page.goto(f"{stack.url}/")
    page.wait_for_selector("#launch-form[data-providers-loaded=true]")
    page.focus("#repo")
    page.keyboard.insert_text(repo_url)  # a paste: the provider is detected from the URL
    page.fill("#ref", "main")
    if file:
        page.select_option("#path-type", "file")
        page.fill("#path", file)
    clicked = time.monotonic()
    page.click("#launch")
    return clicked


def record_timing(name: str, seconds: float) -> None:
    """Click-to-visible figures, kept beside the screenshots for the report."""
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "default-url-timings.txt", "a") as out:
        out.write(f"{name}: {seconds:.1f} s\n")


def file_listed(page: Any, name: str) -> Any:
    return page.locator(".jp-DirListing-item", has_text=name)


def test_a_plain_link_lands_in_jupyterlab_with_the_repository_files(
        page: Any, stack: Stack, lab_repo: str) -> None:
    clicked = launch_from_landing_page(page, stack, lab_repo)
    page.wait_for_url(re.compile(r"/v2/git/"))
    page.wait_for_url(SERVER, timeout=BUILD_TIMEOUT_MS)
    file_listed(page, "hello.ipynb").wait_for(timeout=UI_TIMEOUT_MS)
    record_timing("click to JupyterLab with files listed (first launch, builds the image)",
                  time.monotonic() - clicked)
    assert urllib.parse.urlsplit(page.url).path == "/lab", page.url
    assert page.title() == "JupyterLab"
    assert file_listed(page, "README.md").is_visible() and file_listed(page, "hello.ipynb").is_visible()
    screenshot(page, "default-url-jupyterlab")

    # the next person's launch of the same repository: the image is built, only the server starts
    clicked = launch_from_landing_page(page, stack, lab_repo)
    page.wait_for_url(re.compile(r"/v2/git/"))
    page.wait_for_url(SERVER, timeout=UI_TIMEOUT_MS, wait_until="commit")
    record_timing("click to the browser leaving for the server (image already built)", time.monotonic() - clicked)
    file_listed(page, "hello.ipynb").wait_for(timeout=UI_TIMEOUT_MS)
    record_timing("click to JupyterLab with files listed (image already built)", time.monotonic() - clicked)
    assert page.title() == "JupyterLab"


def test_the_landing_page_s_file_to_open_opens_the_notebook(page: Any, stack: Stack, lab_repo: str) -> None:
    clicked = launch_from_landing_page(page, stack, lab_repo, file="hello.ipynb")
    page.wait_for_url(re.compile(r"/v2/git/.*\?labpath=hello\.ipynb$"))
    page.wait_for_url(SERVER, timeout=BUILD_TIMEOUT_MS)
    heading = page.locator(".jp-Notebook .jp-MarkdownOutput h1", has_text="Hello from Bindery")
    heading.wait_for(timeout=UI_TIMEOUT_MS)
    record_timing("click to the notebook open in JupyterLab (labpath, image already built)",
                  time.monotonic() - clicked)
    assert urllib.parse.urlsplit(page.url).path == "/doc/tree/hello.ipynb", page.url
    assert page.title() == "hello.ipynb - JupyterLab"
    assert page.locator(".jp-MarkdownOutput p", has_text="This notebook came with the repository.").is_visible()
    screenshot(page, "default-url-labpath")


def test_urlpath_tree_opens_the_notebook_ui_s_file_tree(page: Any, stack: Stack, lab_repo: str) -> None:
    page.goto(loading_url(stack, lab_repo, "?urlpath=tree"))
    page.wait_for_url(SERVER, timeout=BUILD_TIMEOUT_MS)
    file_listed(page, "hello.ipynb").wait_for(timeout=UI_TIMEOUT_MS)
    assert urllib.parse.urlsplit(page.url).path == "/tree", page.url
    assert page.title() == "Home", "Notebook 7's file tree"
    assert file_listed(page, "README.md").is_visible()
    screenshot(page, "default-url-tree")


def test_urlpath_goes_where_it_says_even_where_the_image_lacks_it(
        page: Any, stack: Stack, lab_repo: str) -> None:
    """A Voila link to an image without Voila ends at the server's 404 for that page, not in JupyterLab."""
    page.goto(loading_url(stack, lab_repo, "?urlpath=voila/render/hello.ipynb"))
    page.wait_for_url(SERVER, timeout=BUILD_TIMEOUT_MS)
    assert urllib.parse.urlsplit(page.url).path == "/voila/render/hello.ipynb", page.url
    page.wait_for_load_state()
    assert "404 : Not Found" in page.text_content("body"), "the server's own answer for that page"


def test_an_image_without_a_notebook_interface_says_so_then_opens_the_server(
        page: Any, stack: Stack, git_server: GitServer) -> None:
    repo_url = make_repo(git_server, JUPYTER_IMAGE, {"data.csv": "a,b\n1,2\n"})
    page.goto(loading_url(stack, repo_url))
    wait_for_launch(page, "#notice:not([hidden])")
    notice = page.text_content("#notice")
    assert "neither JupyterLab nor the notebook interface" in notice and "urlpath" in notice
    assert page.text_content("#status") == "Ready, but there is no notebook interface to open."
    assert SERVER(page.get_attribute("#open-now", "href") or "")
    screenshot(page, "default-url-no-interface")
    page.wait_for_url(SERVER, timeout=15_000)  # by itself, after the pause
    assert urllib.parse.urlsplit(page.url).path == "/"
    assert "A Jupyter Server is running." in page.text_content("body")

