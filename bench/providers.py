"""What a launch pays in providers/ before any network answer: parsing specs and one HTTP round trip.

Figures: CPU time of the calling thread per call (median of ``--rounds`` rounds):

- ``get_provider`` µs: one call, as the web request and every chain step make it
  (gh and git specs; the git one is the spec of a cached launch, a 40-hex sha);
- ``resolve`` ms: one GitHub ref resolved against a loopback server that replays the
  recorded API answers (tests/providers/recordings: 200 with an ETag, then 304 to
  ``If-None-Match``), HTTP/1.1 keep-alive as GitHub serves it — so connection reuse
  and the per-request cost of the HTTP client show;
- ``launch`` ms: what the providers cost one cached gh launch: 5 ``get_provider`` + 1 resolve.

Rows marked "as before" build providers the way get_provider did before providers/http.py
(a parse and a new ``requests.Session`` per call), so one run shows both.

    .venv/bin/python bench/providers.py [--json] [--calls 1000] [--resolves 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import http.server
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from app.config import load_config  # noqa: E402
from providers import PROVIDERS, RepoProvider, get_provider  # noqa: E402
from providers.http import session  # noqa: E402
from providers.policy import check_allowed  # noqa: E402

RECORDINGS = ROOT / "tests" / "providers" / "recordings"
GH_SPEC = "jupyterhub/binderhub/main"
GIT_SPEC = "https%3A%2F%2Fgit.example.org%2Frepo.git/" + "ab" * 20


def _replay_server() -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    """A loopback GitHub API stand-in: the recorded commit (200), then 304 to its ETag."""
    ok = json.loads((RECORDINGS / "github_commit_200.json").read_text(encoding="utf-8"))
    body = json.dumps(ok["body"]).encode()
    etag = ok["headers"]["etag"]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as GitHub answers

        def do_GET(self) -> None:
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("Content-Length", "0")
                data = b""
            else:
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                data = body
            for key, value in ok["headers"].items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return httpd, thread


def _per_call(fn: Any, calls: int) -> float:
    """CPU seconds of this thread per call: other load on the machine (and the replay server's
    own thread) does not count, so figures compare across runs on a busy machine."""
    started = time.thread_time()
    for _ in range(calls):
        fn()
    return (time.thread_time() - started) / calls


def one_round(api_url: str, calls: int, resolves: int) -> dict[str, float]:
    """One round; the "as before" rows redo what the code did before this module's change
    (a parse and a new session per get_provider), the others call the code as it is."""
    config = load_config({"github_api_url": api_url, "github_url": "https://github.example",
                          "allowed_private_networks": ["127.0.0.0/8"]}, environ={})

    def parse_as_before(prefix: str, spec: str) -> RepoProvider:
        cls = PROVIDERS[prefix]
        # (the git provider asks no web API: it made no session)
        provider = cls(spec, config) if prefix == "git" else cls(spec, config, session=requests.Session())
        check_allowed(prefix, spec, config, needs_allow=cls.needs_allow)
        return provider

    def resolve_with(make: Any) -> float:
        return _per_call(lambda: make().resolve(), resolves) * 1e3

    get_provider("gh", GH_SPEC, config).resolve()  # the 200 that fills the ETag cache
    figures = {
        "get_provider gh µs, as before": _per_call(lambda: parse_as_before("gh", GH_SPEC), calls) * 1e6,
        "get_provider gh µs": _per_call(lambda: get_provider("gh", GH_SPEC, config), calls) * 1e6,
        "get_provider git µs, as before": _per_call(lambda: parse_as_before("git", GIT_SPEC), calls) * 1e6,
        "get_provider git µs": _per_call(lambda: get_provider("git", GIT_SPEC, config), calls) * 1e6,
        "resolve (304) ms, as before": resolve_with(lambda: parse_as_before("gh", GH_SPEC)),
    }
    shared = session()
    shared.trust_env = True  # the shared session as requests makes it: the environment read per request
    try:
        figures["resolve (304) ms, shared session, trust_env"] = resolve_with(
            lambda: get_provider("gh", GH_SPEC, config))
    finally:
        shared.trust_env = False
    figures["resolve (304) ms"] = resolve_with(lambda: get_provider("gh", GH_SPEC, config))
    for when in (", as before", ""):
        figures[f"launch ms{when}"] = (5 * figures[f"get_provider gh µs{when}"] / 1e3
                                       + figures[f"resolve (304) ms{when}"])
    return figures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--resolves", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    httpd, thread = _replay_server()
    try:
        api_url = f"http://127.0.0.1:{httpd.server_address[1]}"
        rounds = [one_round(api_url, args.calls, args.resolves) for _ in range(args.rounds)]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    result = {name: round(statistics.median(r[name] for r in rounds), 3) for name in rounds[0]}
    if args.json:
        print(json.dumps(result))
    else:
        for name, value in result.items():
            print(f"{name:46} {value:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
