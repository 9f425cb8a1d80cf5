"""Unit tests of the page modules (static/js/ansi.js, links.js), run in real Chromium.

The modules are imported by the browser from the app's static folder and called directly;
the rendered HTML is also parsed back by the browser to prove no input becomes markup.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = [pytest.mark.integration]

ESC = "\x1b"


def call(page: Any, module: str, expression: str, *args: Any) -> Any:
    """Evaluate ``expression`` (using ``m`` for the module and ``args``) in the page."""
    return page.evaluate(f"async (args) => {{ const m = await import('/static/js/{module}'); return {expression}; }}",
                         list(args))


@pytest.fixture
def blank(page: Any, live_app: str) -> Any:
    page.goto(f"{live_app}/about")
    return page


@pytest.mark.parametrize(("text", "html"), [
    ("plain text\n", "plain text\n"),
    ("<script>alert(1)</script> & \"q\" 'a'", "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot; &#39;a&#39;"),
    (f"{ESC}[31mred{ESC}[0m after", '<span class="ansi-fg-1">red</span> after'),
    (f"{ESC}[1;32mbold green{ESC}[22m green{ESC}[39m none",
     '<span class="ansi-fg-2 ansi-bold">bold green</span><span class="ansi-fg-2"> green</span> none'),
    (f"{ESC}[91;44mbright on blue{ESC}[m", '<span class="ansi-fg-9 ansi-bg-4">bright on blue</span>'),
    (f"{ESC}[38;5;208morange{ESC}[0m", '<span style="color:rgb(255,135,0)">orange</span>'),
    (f"{ESC}[38;5;244mgrey{ESC}[0m", '<span style="color:rgb(128,128,128)">grey</span>'),
    (f"{ESC}[48;2;1;2;300mtrue{ESC}[0m", '<span style="background-color:rgb(1,2,255)">true</span>'),
    (f"{ESC}[3;4mit{ESC}[23;24m", '<span class="ansi-italic ansi-underline">it</span>'),
    (f"{ESC}[7minv{ESC}[27m", '<span class="ansi-fg-0 ansi-bg-7">inv</span>'),
    (f"Step 1/3{ESC}[K{ESC}[2A{ESC}]0;title{ESC}\\ done", "Step 1/3 done"),
    ("progress 10%\rprogress 50%\rprogress 100%\n", "progress 100%\n"),
    ("bell\x07 back\x08space", "bell backspace"),
    (f"{ESC}[38;5mmalformed{ESC}[0m ok", "malformed ok"),
])
def test_ansi_to_html(blank: Any, text: str, html: str) -> None:
    assert call(blank, "ansi.js", "m.ansiToHtml(args[0])", text) == html


def test_colour_state_spans_calls_and_output_is_inert(blank: Any) -> None:
    parts = [f"{ESC}[33myellow starts\n", "still yellow <b>not bold</b>\n", f"{ESC}[0mplain\n"]
    html = call(blank, "ansi.js", "(() => { const r = new m.AnsiRenderer(); return args[0].map(t => r.render(t)); })()",
                parts)
    assert html == ['<span class="ansi-fg-3">yellow starts</span>\n',
                    '<span class="ansi-fg-3">still yellow &lt;b&gt;not bold&lt;/b&gt;</span>\n', "plain\n"]
    # Whatever comes in, the browser finds only spans and the original text.
    hostile = f"{ESC}[31m<img src=x onerror=alert(1)>{ESC}[38;2;1;2;3\"><svg onload=alert(2)>"
    parsed = blank.evaluate("""async (text) => {
        const m = await import('/static/js/ansi.js');
        const div = document.createElement('div');
        div.innerHTML = m.ansiToHtml(text);
        return [[...div.querySelectorAll('*')].map(e => e.tagName), div.textContent];
    }""", hostile)
    assert set(parsed[0]) <= {"SPAN"}, parsed
    assert "<img src=x onerror=alert(1)>" in parsed[1] and "<svg onload=alert(2)>" in parsed[1]


def test_thousands_of_lines_render_quickly(blank: Any) -> None:
    elapsed = blank.evaluate("""async () => {
        const m = await import('/static/js/ansi.js');
        const r = new m.AnsiRenderer();
        const start = performance.now();
        let html = '';
        const tail = 'x'.repeat(120) + '\\x1b[0m\\n';
        for (let i = 0; i < 20000; i++) html += r.render(`\\x1b[3${i % 8}mline ${i} ` + tail);
        return performance.now() - start;
    }""")
    assert elapsed < 2000, f"20,000 coloured lines took {elapsed:.0f} ms"


@pytest.mark.parametrize(("url", "query", "expected"), [
    ("http://127.0.0.1:9000/", "", "http://127.0.0.1:9000/?token=t0k"),
    ("http://127.0.0.1:9000/user/x/", "?labpath=notebooks/a b.ipynb", "http://127.0.0.1:9000/user/x/doc/tree/notebooks/a%20b.ipynb?token=t0k"),
    ("http://127.0.0.1:9000/", "?filepath=/index.ipynb", "http://127.0.0.1:9000/tree/index.ipynb?token=t0k"),
    ("http://127.0.0.1:9000/", "?urlpath=/lab/tree/x.ipynb", "http://127.0.0.1:9000/lab/tree/x.ipynb?token=t0k"),
    ("http://127.0.0.1:9000/", "?urlpath=voila/render/a.ipynb%3Fv%3D1", "http://127.0.0.1:9000/voila/render/a.ipynb?v=1&token=t0k"),
    ("http://127.0.0.1:9000/", "?urlpath=//evil.example/x", "http://127.0.0.1:9000/evil.example/x?token=t0k"),
    ("http://127.0.0.1:9000/", "?urlpath=https://evil.example/", "http://127.0.0.1:9000/https://evil.example/?token=t0k"),
    ("http://127.0.0.1:9000/", "?labpath=a.ipynb&urlpath=lab", "http://127.0.0.1:9000/doc/tree/a.ipynb?token=t0k"),
])
def test_server_url_from_ready_event(blank: Any, url: str, query: str, expected: str) -> None:
    result = call(blank, "links.js", "m.serverUrl(args[0], 't0k', new URLSearchParams(args[1]))", url, query)
    assert result == expected


@pytest.mark.parametrize(("url", "query", "default_url", "expected"), [
    # a plain link opens the page the launcher found; the token stays a query parameter
    ("http://127.0.0.1:9000/", "", "/lab", "http://127.0.0.1:9000/lab?token=t0k"),
    ("http://127.0.0.1:9000/user/x/binder/", "", "/tree", "http://127.0.0.1:9000/user/x/binder/tree?token=t0k"),
    ("http://127.0.0.1:9000/", "", "/", "http://127.0.0.1:9000/?token=t0k"),
    ("http://127.0.0.1:9000/", "", "", "http://127.0.0.1:9000/?token=t0k"),  # no word from the launcher
    # what the link names wins, with BinderHub's meanings
    ("http://127.0.0.1:9000/", "?labpath=index.ipynb", "/tree", "http://127.0.0.1:9000/doc/tree/index.ipynb?token=t0k"),
    ("http://127.0.0.1:9000/", "?filepath=index.ipynb", "/lab", "http://127.0.0.1:9000/tree/index.ipynb?token=t0k"),
    ("http://127.0.0.1:9000/", "?urlpath=rstudio", "/lab", "http://127.0.0.1:9000/rstudio?token=t0k"),
    ("http://127.0.0.1:9000/", "?urlpath=voila/render/app.ipynb", "/lab",
     "http://127.0.0.1:9000/voila/render/app.ipynb?token=t0k"),
    ("http://127.0.0.1:9000/", "?urlpath=tree", "/lab", "http://127.0.0.1:9000/tree?token=t0k"),
    # the page stays on the server's origin whatever the event says
    ("http://127.0.0.1:9000/", "", "//evil.example/x", "http://127.0.0.1:9000/evil.example/x?token=t0k"),
    ("http://127.0.0.1:9000/", "", "/lab?token=other#x", "http://127.0.0.1:9000/lab?token=t0k"),
])
def test_server_url_opens_the_default_page_unless_the_link_names_one(
        blank: Any, url: str, query: str, default_url: str, expected: str) -> None:
    result = call(blank, "links.js", "m.serverUrl(args[0], 't0k', new URLSearchParams(args[1]), args[2])",
                  url, query, default_url)
    assert result == expected
    names = call(blank, "links.js", "m.namesAPage(new URLSearchParams(args[0]))", query)
    assert names is bool(query)


def test_specs_for_each_kind(blank: Any, live_app: str) -> None:
    providers = blank.evaluate("fetch('/api/repoproviders').then(r => r.json())")
    by_id = {p["id"]: p for p in providers}
    cases = [("gh", "org/repo", "", "org/repo/HEAD"), ("gh", "org/repo", "feature/x", "org/repo/feature/x"),
             ("gl", "group/sub/project", "main", "group%2Fsub%2Fproject/main"),
             ("git", "https://h.example/r.git?x#y", "v1", "https%3A%2F%2Fh.example%2Fr.git%3Fx%23y/v1"),
             ("zenodo", "10.5281/zenodo.3242074", "ignored", "10.5281/zenodo.3242074"),
             ("gh", "   ", "main", "")]
    for provider, repo, ref, spec in cases:
        got = call(blank, "links.js", "m.buildSpec(args[0], args[1], args[2])", by_id[provider], repo, ref)
        assert got == spec, (provider, repo, ref, json.dumps(got))
