"""The landing page in real headless Chromium, against the app serving /api/repoproviders.

Real: the Flask app from its factory (threaded WSGI server on loopback, embedded Redis),
Debian's Chromium. Nothing is mocked; the provider list is the app's own.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.templates.conftest import PHONE, screenshot

pytestmark = [pytest.mark.integration]

# pasted URL -> provider, repo field, ref field, path field, the share link's tail
PASTES = [
    ("https://github.com/binder-examples/requirements", "gh", "binder-examples/requirements", "HEAD", "",
     "v2/gh/binder-examples/requirements/HEAD"),
    ("https://github.com/binder-examples/requirements/blob/main/notebooks/index.ipynb", "gh",
     "binder-examples/requirements", "main", "notebooks/index.ipynb",
     "v2/gh/binder-examples/requirements/main?labpath=notebooks%2Findex.ipynb"),
    ("https://gitlab.com/gitlab-org/sub-group/gitlab-docs/-/tree/v1.2", "gl", "gitlab-org/sub-group/gitlab-docs",
     "v1.2", "", "v2/gl/gitlab-org%2Fsub-group%2Fgitlab-docs/v1.2"),
    ("https://gist.github.com/octocat/6cad326836d38bd3a7ae", "gist", "octocat/6cad326836d38bd3a7ae", "HEAD", "",
     "v2/gist/octocat/6cad326836d38bd3a7ae/HEAD"),
    ("https://doi.org/10.5281/zenodo.3242074", "zenodo", "10.5281/zenodo.3242074", None, "",
     "v2/zenodo/10.5281/zenodo.3242074"),
    ("https://example.org/some/repo.git", "git", "https://example.org/some/repo.git", "HEAD", "",
     "v2/git/https%3A%2F%2Fexample.org%2Fsome%2Frepo.git/HEAD"),
]


def open_landing(page: Any, live_app: str) -> None:
    page.goto(f"{live_app}/")
    page.wait_for_selector("#launch-form[data-providers-loaded=true]")


def paste(page: Any, text: str) -> None:
    """Put text in the repository field as a paste does (one input event with the whole value)."""
    page.focus("#repo")
    page.fill("#repo", "")
    page.keyboard.insert_text(text)


def offered(live_app: str) -> set[str]:
    return {p["id"] for p in requests.get(f"{live_app}/api/repoproviders", timeout=10).json()}


@pytest.mark.parametrize(("url", "provider", "repo", "ref", "path", "tail"), PASTES,
                         ids=[p[1] + ("-blob" if "blob" in p[0] else "") for p in PASTES])
def test_pasting_a_url_picks_the_provider_and_fills_the_fields(
        page: Any, live_app: str, url: str, provider: str, repo: str, ref: str | None, path: str,
        tail: str) -> None:
    assert provider in offered(live_app), f"/api/repoproviders must offer {provider}"
    open_landing(page, live_app)
    paste(page, url)
    assert page.input_value("#provider") == provider
    assert page.input_value("#repo") == repo
    if ref is None:
        assert page.is_hidden("#ref-field"), "a provider without refs hides the ref field"
    else:
        assert page.input_value("#ref") == ref
    assert page.input_value("#path") == path
    link = f"{live_app}/{tail}"
    assert page.text_content("#share-url") == link
    assert page.text_content("#badge-markdown") == f"[![Binder]({live_app}/badge_logo.svg)]({link})"
    assert page.text_content("#badge-rst") == f".. image:: {live_app}/badge_logo.svg\n :target: {link}"
    assert "Recognised" in page.text_content("#form-status")


def test_share_link_and_badges_follow_the_fields_and_copy(page: Any, live_app: str) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_app)
    open_landing(page, live_app)
    assert page.is_disabled("#copy-markdown"), "nothing to copy before a repository is named"
    page.select_option("#provider", "gh")
    page.fill("#repo", "org/project")
    assert page.input_value("#ref") == "HEAD", "ref defaults to HEAD"
    assert page.text_content("#share-url") == f"{live_app}/v2/gh/org/project/HEAD"
    page.fill("#ref", "release/2.0")
    page.select_option("#path-type", "url")
    page.fill("#path", "/lab/tree/demo.ipynb")
    link = f"{live_app}/v2/gh/org/project/release/2.0?urlpath=%2Flab%2Ftree%2Fdemo.ipynb"
    assert page.text_content("#share-url") == link
    page.select_option("#path-type", "file")
    link = f"{live_app}/v2/gh/org/project/release/2.0?labpath=lab%2Ftree%2Fdemo.ipynb"
    assert page.text_content("#share-url") == link
    markdown = f"[![Binder]({live_app}/badge_logo.svg)]({link})"
    assert page.text_content("#badge-markdown") == markdown
    page.click("#copy-markdown")
    page.wait_for_function("document.getElementById('copy-status').textContent.includes('Markdown')")
    assert page.evaluate("navigator.clipboard.readText()") == markdown
    page.click("#copy-rst")
    page.wait_for_function("document.getElementById('copy-status').textContent.includes('reStructuredText')")
    assert page.evaluate("navigator.clipboard.readText()") == \
        f".. image:: {live_app}/badge_logo.svg\n :target: {link}"
    page.select_option("#provider", "git")
    page.fill("#repo", "https://example.org/r.git")
    assert page.input_value("#provider") == "git"
    assert page.text_content("#share-url").startswith(f"{live_app}/v2/git/https%3A%2F%2Fexample.org%2Fr.git/")
    screenshot(page, "landing")


def test_the_share_box_says_how_to_build_on_push(page: Any, live_app: str) -> None:
    """The webhook URL for GitHub and GitLab repositories and what to paste in their settings; the API otherwise."""
    open_landing(page, live_app)
    assert page.is_disabled("#copy-push") and page.text_content("#push-url") == "—"
    page.select_option("#provider", "gh")
    page.fill("#repo", "org/project")
    assert page.text_content("#push-url") == f"{live_app}/hooks/github"
    steps = page.locator("#push-steps li").all_text_contents()
    assert f"Payload URL: {live_app}/hooks/github" in steps and "Content type: application/json" in steps
    assert any(step.startswith("Secret: ") for step in steps) and "Which events: Just the push event." in steps
    page.select_option("#provider", "gl")
    page.fill("#repo", "group/project")
    assert page.text_content("#push-url") == f"{live_app}/hooks/gitlab"
    assert f"URL: {live_app}/hooks/gitlab" in page.locator("#push-steps li").all_text_contents()
    page.select_option("#provider", "git")
    page.fill("#repo", "https://example.org/r.git")
    url = f"{live_app}/api/prebuild/git/https%3A%2F%2Fexample.org%2Fr.git/HEAD"
    assert page.text_content("#push-url") == url, "no webhook from an unknown host: the API, with a token"
    assert any(url in step and "Authorization: Bearer" in step
               for step in page.locator("#push-steps li").all_text_contents())
    assert page.is_enabled("#copy-push")


def test_launch_button_opens_the_loading_page(page: Any, live_app: str) -> None:
    open_landing(page, live_app)
    page.click("#launch")
    assert "fill in the repository" in page.text_content("#form-status")
    assert page.evaluate("document.activeElement.id") == "repo", "focus goes to the missing field"
    paste(page, "https://github.com/org/project/tree/dev")
    page.fill("#path", "README.md")
    page.click("#launch")
    page.wait_for_url(f"{live_app}/v2/gh/org/project/dev?labpath=README.md")
    assert page.text_content("h1") == "Starting org/project/dev"


def test_keyboard_labels_and_phone_width(browser: Any, live_app: str) -> None:
    context = browser.new_context(viewport=PHONE)
    try:
        page = context.new_page()
        open_landing(page, live_app)
        for control in ("provider", "repo", "ref", "path-type", "path"):
            label = page.evaluate(f"document.getElementById('{control}').labels.length")
            assert label >= 1, f"#{control} has a label"
        page.keyboard.press("Tab")  # skip link first
        assert page.evaluate("document.activeElement.className") == "skip-link"
        page.focus("#repo")
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline == "solid", "focus is visible"
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"no sideways scrolling at {PHONE['width']} px ({width})"
        paste(page, "https://github.com/binder-examples/a-rather-long-repository-name-for-phones")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"long links wrap ({width})"
        screenshot(page, "landing-phone", PHONE)
    finally:
        context.close()


def test_about_badges_legacy_links_and_404(page: Any, live_app: str) -> None:
    page.goto(f"{live_app}/about")
    assert page.text_content("#version-bindery").strip()
    assert page.text_content("#version-repo2docker").strip() == "2024.7.0"
    assert page.text_content("#operator-message") == "Maintenance on Sunday.\nBe kind."
    for name in ("badge.svg", "badge_logo.svg"):
        response = requests.get(f"{live_app}/{name}", timeout=10)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("image/svg+xml")
        assert "launch" in response.text
        size = page.evaluate(f"""new Promise(ok => {{ const i = new Image();
            i.onload = () => ok([i.naturalWidth, i.naturalHeight]); i.onerror = () => ok(null);
            i.src = '/{name}'; }})""")
        assert size and size[1] == 20, f"{name} renders as a 20 px high badge: {size}"
    page.goto(f"{live_app}/repo/org/project/notebooks/a.ipynb")
    assert page.url == f"{live_app}/v2/gh/org/project/HEAD?urlpath=notebooks%2Fa.ipynb"
    response = page.goto(f"{live_app}/no/such/page")
    assert response.status == 404
    assert page.text_content("h1") == "Page not found"
