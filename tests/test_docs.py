"""The documentation stays true to the tree: links resolve, the README stays short, every Redis key is listed,
and the shell examples run as written (or say why they cannot).

docs/configuration.md is checked against the schema in tests/app/test_config.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from app.launch_events import make_event
from app.redis_server import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md",
         ROOT / "charts" / "bindery" / "README.md", ROOT / "contrib" / "jupyterhub" / "README.md"]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# A Redis key Bindery names in code: the literal part before any placeholder ("bindery: " is a log prefix).
KEY_LITERAL = re.compile(r"""["']bindery:([a-z][a-z0-9_.-]*(?::[a-z][a-z0-9_.-]*)*:?)""")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_point_at_files_that_exist(page: Path) -> None:
    targets = [target for target in LINK.findall(page.read_text()) if "://" not in target]
    missing = [target for target in targets if not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_readme_is_short_and_shows_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make run" in text and "make test" in text
    assert len(text.splitlines()) <= 150, "the README points to docs/; reference material belongs there"


def _registry_patterns() -> list[str] | None:
    """The key patterns of app/keys.py's ``KEYS`` registry, once the tree has it."""
    try:
        from app import keys  # type: ignore[attr-defined]
    except ImportError:
        return None
    entries = getattr(keys, "KEYS", None)
    if entries is None:
        return None
    values = entries.values() if isinstance(entries, dict) else entries
    return [str(getattr(entry, "pattern", None) or entry[0]) for entry in values]


def _named_in_code() -> dict[str, set[str]]:
    named: dict[str, set[str]] = {}
    for top in ("app", "tasks", "providers"):
        for path in (ROOT / top).rglob("*.py"):
            for literal in KEY_LITERAL.findall(path.read_text()):
                named.setdefault("bindery:" + literal, set()).add(str(path.relative_to(ROOT)))
    return named


def test_architecture_lists_every_redis_key() -> None:
    """Every key of app/keys.py (or, before it exists, every ``bindery:`` key the code names) is in the table."""
    layout = (ROOT / "docs" / "architecture.md").read_text()
    patterns = _registry_patterns()
    if patterns is not None:
        prefixes = {re.split(r"[{<*]", pattern, maxsplit=1)[0]: {"app/keys.py"} for pattern in patterns}
    else:
        prefixes = _named_in_code()
    assert len(prefixes) > 10, f"found too few keys to be reading the code: {sorted(prefixes)}"
    unlisted = {key: sorted(paths) for key, paths in prefixes.items() if key not in layout}
    assert not unlisted, f"docs/architecture.md (Redis keys) does not list: {unlisted}"


# --- the shell examples ------------------------------------------------------------------------
# Every command the pages show is either run here, as written (against this test's own services on
# 127.0.0.1, with the few substitutions each names), or listed with the reason it cannot be: a new
# or changed command fails test_every_documented_command_is_run_or_skipped_with_a_reason until
# it is one or the other, so the pages cannot drift from what works.

FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```", re.M | re.S)
INDENTED = re.compile(r"(?:\A|\n\n)((?: {4}\S[^\n]*\n)+)")
INLINE = re.compile(r"`((?:\.venv/bin/python -m app\.cli|make image|scripts/)[^`]*)`")
COMMAND = re.compile(r"^(?:make|curl|\.venv/bin/\S+|export|python3|useradd|git|cd|install|\$EDITOR|sudo|systemctl|"
                     r"helm|scripts/\S+|[A-Z_]+=\S+)(?:\s|$)")


def _commands_in(text: str) -> list[str]:
    """The commands of a code block: continuations joined, comments and extra spaces dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line.strip())
        if COMMAND.match(line):
            found.append(" ".join(line.split()))
    return found


def documented_commands() -> dict[str, set[str]]:
    """Every shell command on the pages -> the pages that show it."""
    found: dict[str, set[str]] = {}
    for page in PAGES:
        text = page.read_text()
        blocks = [body for lang, body in FENCE.findall(text) if lang in ("", "sh", "bash", "shell", "console")]
        blocks += INDENTED.findall(FENCE.sub("", text))
        commands = [command for block in blocks for command in _commands_in(block)]
        commands += [" ".join(code.split()) for code in INLINE.findall(FENCE.sub("", text))]
        for command in commands:
            found.setdefault(command, set()).add(str(page.relative_to(ROOT)))
    return found


@dataclass(frozen=True)
class Example:
    """How a documented command is run here: what it must print (or write), and what is substituted."""

    expect: str
    replace: tuple[tuple[str, str], ...] = ()  # (documented text, text here); {tmp} and {port} are filled in
    web: bool = False  # needs the test service (gunicorn + Redis) on 127.0.0.1:{port}
    file: str = ""  # the output is checked in this file (under {tmp}) instead of stdout


RUN: dict[str, Example] = {
    ".venv/bin/python -m app.cli config": Example('"rate_limit": 0'),
    ".venv/bin/python -m app.cli config-reference > docs/configuration.md": Example(
        "# Configuration reference", replace=(("> docs/configuration.md", "> {tmp}/configuration.md"),),
        file="configuration.md"),
    ".venv/bin/python -m app.cli events gh/org/repo --days 30": Example(
        "2 launches of gh/org/repo in the last 30 days"),
    "sudo -u bindery env BINDERY_CONFIG=/etc/bindery/bindery.yaml .venv/bin/python -m app.cli systemd "
    "--redis-port 6379 --output /tmp/bindery-units": Example(
        "wrote bindery-redis.service", replace=(("sudo -u bindery ", ""), ("/etc/bindery/", "{tmp}/"),
                                                ("/tmp/bindery-units", "{tmp}/units"))),
    "curl -s http://127.0.0.1:8585/health": Example('"checks"', replace=(("8585", "{port}"),), web=True),
    ".venv/bin/python -m pytest tests/app/test_config.py -q -k reference": Example(" passed"),
    ".venv/bin/ruff check .": Example("All checks passed!"),
    ".venv/bin/python bench/streams.py --help": Example("usage: streams.py"),
}

SKIPPED: dict[str, str] = {
    "make run": "the whole service, until Ctrl-C (tests/app/test_runner.py runs its runner)",
    "make test": "the whole suite",
    "make bench": "minutes of load; bench/README.md",
    "BINDERY_CORS_ALLOW_ORIGIN='*' make run": "the whole service (tests/system/test_cross_origin.py)",
    "python3 -m http.server 8000 --bind 127.0.0.1": "serves a directory until stopped",
    "curl -N -H 'Accept: text/event-stream' \"http://127.0.0.1:8585/build/git/$(python3 -c 'import urllib.parse,sys; "
    "print(urllib.parse.quote(sys.argv[1], safe=\"\"))' https://github.com/binder-examples/requirements)/HEAD\"":
        "clones from GitHub (the network); tests/system/ launch through the same API from a local git server",
    ".venv/bin/python -m pytest tests/app/test_config.py -q": "the same file as the -k reference line, run above",
    "export \"$(scripts/engine.sh)\"": "as root it installs and configures Podman (tests/conftest.py uses its output)",
    "scripts/engine.sh": "as root it installs and configures Podman (tests/conftest.py uses its output)",
    ".venv/bin/mypy app tasks providers": "make lint runs it (tens of seconds without its cache)",
    "make image REGISTRY=registry.example.org/bindery TAG=v1": "tests/test_dockerfile.py runs it against a "
                                                               "registry on loopback",
    "make image REGISTRY=...": "the same command, abbreviated",
    "make image": "named, not shown with its REGISTRY (tests/test_dockerfile.py: refused without one)",
    "helm install binder charts/bindery --set image.repository=registry.example.org/bindery --set image.tag=v1 ...":
        "needs a cluster; tests/charts/ render the chart with these values",
    "helm install binder charts/bindery -f secret.yaml -f config.yaml -f image.yaml":
        "needs a cluster; tests/charts/ render the guide's files",
    "helm install binder charts/bindery -f config.yaml --set-file "
    "jupyterhub.hub.extraFiles.bindery-spawner.stringData=contrib/jupyterhub/bindery_spawner.py":
        "needs a cluster; tests/charts/ render the chart",
    "useradd --system --home-dir /var/lib/bindery --shell /usr/sbin/nologin bindery": "root: adds an account",
    "git clone \"$PWD\" /opt/bindery": "root: installs into /opt",
    "cd /opt/bindery && make venv": "root: installs into /opt",
    "cd /opt/bindery": "root: installs into /opt",
    "install -d -m 0755 /etc/bindery": "root: writes /etc",
    "$EDITOR /etc/bindery/bindery.yaml": "an editor",
    "install -m 0600 -o bindery /dev/null /etc/bindery/bindery.env": "root: writes /etc",
    "$EDITOR /etc/bindery/bindery.env": "an editor",
    "install -m 0644 /tmp/bindery-units/* /etc/systemd/system/": "root: installs systemd units",
    "systemctl daemon-reload": "root: systemd",
    "systemctl enable --now bindery.target": "root: systemd",
    "systemctl list-dependencies bindery.target": "systemd",
    ".venv/bin/python bench/streams.py --json": "minutes of load; bench/README.md",
    ".venv/bin/python bench/streams.py [--k 2000 --k 4000] [--interval 1] [--hold 10]": "a synopsis, and load",
    ".venv/bin/python bench/build_dedup.py [--n 200 --n 400] [--launcher bench|docker]": "a synopsis, and load",
    ".venv/bin/python bench/cached_launch.py [--rounds-1 20] [--rounds 5]": "a synopsis, and load",
    ".venv/bin/python bench/real_launch.py [--launches 10]": "a synopsis, and load",
    ".venv/bin/python bench/real_launch.py --pool [--launches 10]": "a synopsis, and load",
    ".venv/bin/python bench/content_reuse.py [--rounds 5]": "a synopsis, and load",
    ".venv/bin/python bench/build_on_push.py [--rounds 3] [--pool]": "a synopsis, and load",
    ".venv/bin/python bench/isolation.py [--builds 2] [--launches 5]": "a synopsis, and load",
    ".venv/bin/python bench/burst.py [--n 30] [--mode auto --mode off --mode pool] [--concurrency 4]":
        "a synopsis, and load",
    ".venv/bin/python bench/proxy_launch.py [--launches 10] [--rounds 100]": "a synopsis, and load",
}


def test_every_documented_command_is_run_or_skipped_with_a_reason() -> None:
    documented = documented_commands()
    assert len(documented) > 20, f"found too few commands to be reading the pages: {sorted(documented)}"
    unclassified = {command: sorted(pages) for command, pages in documented.items()
                    if command not in RUN and command not in SKIPPED}
    assert not unclassified, f"run these in RUN (tests/test_docs.py) or give SKIPPED a reason: {unclassified}"
    gone = sorted((set(RUN) | set(SKIPPED)) - set(documented))
    assert not gone, f"no page shows these any more; drop them from tests/test_docs.py: {gone}"


@pytest.fixture(scope="module")
def docs_web(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The test service the curl examples talk to: gunicorn as `make run` starts it, on a free loopback port."""
    port = free_port()
    env = {**_clean_env(), "PORT": str(port), "REDIS_URL": redis_server.url, "BINDERY_LAUNCHER": "bench",
           "BINDERY_DATA_DIR": str(tmp_path_factory.mktemp("docs-web"))}
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/versions", timeout=2)
                break
            except requests.RequestException:
                assert web.poll() is None and time.monotonic() < deadline, "the test web did not start"
                time.sleep(0.2)
        yield port
    finally:
        web.terminate()
        try:
            web.wait(20)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait()


def _clean_env() -> dict[str, str]:
    """This machine's environment without Bindery's settings or an engine: the examples set their own."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("BINDERY_") and k not in ("REDIS_URL", "DOCKER_HOST", "PORT")}


@pytest.mark.parametrize("command", sorted(RUN))
def test_documented_command_runs_as_written(command: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    example = RUN[command]
    port = request.getfixturevalue("docs_web") if example.web else 0
    shell = command
    for documented, here in example.replace:
        assert documented in shell, f"{documented!r} is no longer in {command!r}"
        shell = shell.replace(documented, here.format(tmp=tmp_path, port=port))
    (tmp_path / "bindery.yaml").write_text("data_dir: var-docs\n")
    events = tmp_path / "launch-events.jsonl"
    launch = {"provider": "gh", "spec": "org/repo/HEAD", "resolved_ref": "a" * 40, "origin": "http://127.0.0.1"}
    other = {**launch, "spec": "org/other/HEAD"}
    events.write_text("".join(json.dumps(make_event(each, "success")) + "\n" for each in (launch, launch, other)))
    env = {**_clean_env(), "BINDERY_DATA_DIR": str(tmp_path / "data"), "BINDERY_LAUNCH_EVENT_FILE": str(events),
           "BINDERY_GITHUB_TOKEN": "ghp_docs_example_secret"}
    ran = subprocess.run(["bash", "-c", shell], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, f"{shell}\n{ran.stdout[-2000:]}\n{ran.stderr[-2000:]}"
    output = (tmp_path / example.file).read_text() if example.file else ran.stdout + ran.stderr
    assert example.expect in output, f"{shell}\n{output[-2000:]}"
    assert "ghp_docs_example_secret" not in ran.stdout + ran.stderr, "a secret was printed"
    if example.file == "configuration.md":
        assert output == (ROOT / "docs" / "configuration.md").read_text()


def test_the_documented_start_up_warning_is_the_one_the_web_prints() -> None:
    """docs/operating.md quotes a warning; it must be, word for word, what gunicorn.conf.py prints."""
    quoted = [line for line in (ROOT / "docs" / "operating.md").read_text().splitlines()
              if line.startswith("bindery: WARNING:")]
    assert quoted, "docs/operating.md no longer quotes the start-up warning"
    loaded = subprocess.run([sys.executable, "-c", "import runpy; runpy.run_path('gunicorn.conf.py')"], cwd=ROOT,
                            env={**_clean_env(), "BINDERY_LISTEN_ADDRESS": "0.0.0.0"}, capture_output=True,
                            text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    assert set(quoted) <= set(loaded.stderr.splitlines()), loaded.stderr
