"""Finding the page a launched server opens (tasks/backends/default_url.py).

The probe's own logic against a small HTTP server on loopback that answers like a Jupyter
server with a given set of interfaces; the launcher tests run it against real servers.
"""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tasks.backends import default_url
from tasks.backends.default_url import candidates, default_url_event, find_default_url


class FakeJupyter:
    """Answers 200 on the pages it has (and below them), 404 elsewhere; records what was asked."""

    def __init__(self, pages: set[str], status: int = 200) -> None:
        self.asked: list[tuple[str, str | None]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.asked.append((self.path, self.headers.get("Authorization")))
                path = self.path.split("?")[0]
                found = any(path == page or path.startswith(page + "/") for page in pages)
                self.send_response(status if found else 404)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/user/x/binder/"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[FakeJupyter] = []

    def start(pages: set[str], status: int = 200) -> FakeJupyter:
        servers.append(FakeJupyter(pages, status))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_candidates_fall_back_to_jupyterlab_then_the_notebook_ui() -> None:
    assert candidates("/lab") == ["/lab", "/tree"]
    assert candidates("/tree") == ["/tree", "/lab"]
    assert candidates("/voila/render/app.ipynb") == ["/voila/render/app.ipynb", "/lab", "/tree"]
    assert candidates("/") == [], "the root is wanted: nothing to look for"


@pytest.mark.parametrize(("pages", "default_url", "found", "asked"), [
    ({"/user/x/binder/lab", "/user/x/binder/tree"}, "/lab", "/lab", ["lab"]),
    ({"/user/x/binder/tree"}, "/lab", "/tree", ["lab", "tree"]),
    (set(), "/lab", "/", ["lab", "tree"]),
    ({"/user/x/binder/lab"}, "/voila/render/app.ipynb", "/lab", ["voila/render/app.ipynb", "lab"]),
    ({"/user/x/binder/voila"}, "/voila/render/app.ipynb", "/voila/render/app.ipynb", ["voila/render/app.ipynb"]),
    (set(), "/", "/", []),
])
def test_the_first_page_the_server_has_wins(serve: Any, pages: set[str], default_url: str, found: str,
                                            asked: list[str]) -> None:
    server = serve(pages)
    assert find_default_url(requests.Session(), server.url, "t0k", default_url) == found
    assert [path.removeprefix("/user/x/binder/") for path, _ in server.asked] == asked
    assert all(auth == "token t0k" for _, auth in server.asked), "the token travels in a header, not the URL"


def test_any_answer_but_404_counts_as_there(serve: Any) -> None:
    """A redirect (e.g. to a login page) or an error still means the page exists: not a fallback."""
    server = serve({"/user/x/binder/lab"}, status=302)
    assert find_default_url(requests.Session(), server.url, "t0k", "/lab") == "/lab"


def test_a_server_that_does_not_answer_keeps_the_setting(serve: Any) -> None:
    server = serve(set())
    url = server.url
    server.stop()
    assert find_default_url(requests.Session(), url, "t0k", "/lab", timeout=(1, 1)) == "/lab"


def test_an_image_seen_before_is_not_probed_again(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its tag names one commit's build: what it served once, it serves on every launch."""
    image = f"127.0.0.1:5000/bindery-r-{uuid.uuid4().hex}:0123abc"
    server = serve({"/user/x/binder/tree"})
    assert find_default_url(requests.Session(), server.url, "t0k", "/lab", image=image) == "/tree"
    assert len(server.asked) == 2
    other = serve({"/user/x/binder/tree"})
    assert find_default_url(requests.Session(), other.url, "t1k", "/lab", image=image) == "/tree"
    assert other.asked == [], "a second launch of the image pays no request"
    assert find_default_url(requests.Session(), other.url, "t1k", "/voila/render/a.ipynb", image=image) == "/tree"
    assert len(other.asked) == 3, "another setting is another question"
    assert find_default_url(requests.Session(), other.url, "t1k", "/lab") == "/tree"
    assert len(other.asked) == 5, "without an image, always asked"
    monkeypatch.setattr(default_url, "FOUND_MAX", 2)
    for n in range(3):
        find_default_url(requests.Session(), other.url, "t1k", "/lab", image=f"{image}-{n}")
    assert (image, "/lab") not in default_url._FOUND, "the oldest answer goes when the memory is full"
    assert len(default_url._FOUND) == 2


def test_a_failed_probe_is_not_remembered(serve: Any) -> None:
    image = f"127.0.0.1:5000/bindery-r-{uuid.uuid4().hex}:0123abc"
    gone = serve(set())
    url = gone.url
    gone.stop()
    assert find_default_url(requests.Session(), url, "t0k", "/lab", timeout=(1, 1), image=image) == "/lab"
    server = serve({"/user/x/binder/tree"})
    assert find_default_url(requests.Session(), server.url, "t0k", "/lab", image=image) == "/tree"
    assert len(server.asked) == 2, "the next launch asks"


def test_events_say_what_the_page_opens_and_why() -> None:
    assert default_url_event("/lab", "/lab") is None, "the server's root leads there: nothing to say"
    assert default_url_event("/", "/") is None
    fallback = default_url_event("/lab", "/tree")
    assert fallback == {"phase": "launching", "default_url": "/tree", "message":
                        "This image has no JupyterLab: opening the notebook interface (/tree) instead.\n"}
    custom = default_url_event("/voila/tree", "/lab")
    assert custom is not None and custom["message"].startswith("The server has no page at /voila/tree: opening "
                                                                "JupyterLab (/lab)")
    bare = default_url_event("/lab", "/")
    assert bare is not None and bare["default_url"] == "/" and bare["no_interface"] is True
    assert "neither JupyterLab nor the notebook interface" in bare["message"]
    assert "urlpath" in bare["message"], "says how a link reaches what the image serves"
