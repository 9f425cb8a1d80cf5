"""One public address: `make run` with configurable-http-proxy, servers under /user/<id>/ on its origin.

Real: the runner as `make run` starts it (``python -m app.runner``, ``proxy`` on) with CHP, its
embedded Redis, gunicorn and the Celery workers; repo2docker builds FROM the JupyterLab image
through the Podman engine from git over HTTP on loopback; Debian's Chromium.  In the browser a
plain ``/v2/`` link ends on ``http://127.0.0.1:<PORT>/user/<id>/lab`` with the repository's
files, and code runs in a kernel over a websocket through CHP.  CHP SIGKILLed: the runner starts
it again and the server's route comes back (``reconcile``).  ``launcher.stop`` removes the route.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from app import create_app
from app.extensions import docker_client
from tasks.backends import proxy_routes
from tasks.backends.docker_launcher import INSTANCE, DockerLauncher
from tests.clients import wait_for
from tests.conftest import GitServer
from tests.stack import launch_ports, run_prefix
from tests.system.supervised import Runner
from tests.system.test_default_url import BUILD_TIMEOUT_MS, LAB_IMAGE, NOTEBOOK, UI_TIMEOUT_MS, make_repo
from tests.templates.conftest import screenshot

pytestmark = [pytest.mark.integration, pytest.mark.engine]

# In the server's page: a kernel started through the REST API, then code run over its websocket
# (Jupyter's kernel protocol, JSON frames), both through CHP on the page's own origin.
RUN_CODE = """async ([base, token, code]) => {
  const headers = {Authorization: "token " + token, "Content-Type": "application/json"};
  const started = await fetch(base + "api/kernels", {method: "POST", headers, body: '{"name": "python3"}'});
  const kernel = await started.json();
  const ws = new WebSocket(location.origin.replace(/^http/, "ws") + base + "api/kernels/" + kernel.id
                           + "/channels?token=" + token);
  const id = crypto.randomUUID();
  const output = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no output within 60 s")), 60000);
    ws.onerror = () => reject(new Error("websocket error"));
    ws.onmessage = (message) => {
      const msg = JSON.parse(message.data);
      if (msg.parent_header.msg_id !== id || msg.msg_type !== "stream") return;
      clearTimeout(timer);
      resolve(msg.content.text);
    };
    ws.onopen = () => ws.send(JSON.stringify({
      header: {msg_id: id, username: "", session: crypto.randomUUID(), msg_type: "execute_request", version: "5.3"},
      parent_header: {}, metadata: {}, channel: "shell", buffers: [],
      content: {code, silent: false, store_history: false, user_expressions: {}, allow_stdin: false,
                stop_on_error: true}}));
  });
  ws.close();
  await fetch(base + "api/kernels/" + kernel.id, {method: "DELETE", headers});
  return output;
}"""


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory, docker_host: str,
           engine: docker.DockerClient) -> Iterator[Runner]:
    low, high = launch_ports()
    running = Runner(tmp_path_factory.mktemp("proxied"), {
        "proxy": "true",
        "docker_host": docker_host,  # no registry: images stay in the engine
        "image_prefix": run_prefix("localhost/bindery-test-"),
        "instance_name": f"proxy-{uuid.uuid4().hex[:12]}",
        "launch_ports": f"{low}-{high}",
        "launch_timeout": 180,
        "launch_workers": 1,
        "keepalive_interval": 1,
        "health_cache_seconds": 0,
        "log_format": "text",
    }).start(timeout=120)
    yield running
    status = running.stop()
    left = running.left_running()
    mine = f"{INSTANCE}={running.settings['instance_name']}"  # exactly this runner's servers
    for container in engine.containers.list(ignore_removed=True, all=True, filters={"label": [mine]}):
        container.remove(force=True)
    assert status == 0, running.output()[-3000:]
    assert not left, f"still running after Ctrl-C: {left}"


def chp_api(runner: Runner) -> proxy_routes.ProxyAPI:
    """CHP's API as the runner started it: its port from CHP's command line, its token from data_dir."""
    proc = runner.child("proxy")
    assert proc is not None, runner.output()[-3000:]
    command = proc.cmdline()
    token = (runner.directory / "proxy_auth_token").read_text().strip()
    assert token not in " ".join(command), "the token is never on a command line"
    return proxy_routes.ProxyAPI(f"http://127.0.0.1:{command[command.index('--api-port') + 1]}", token)


def launcher_of(runner: Runner, docker_host: str) -> tuple[Any, DockerLauncher]:
    """The runner's launcher, as its workers make it (its Redis, its proxy), to stop a server."""
    redis_proc = runner.child("redis")
    assert redis_proc is not None
    port = re.search(r"127\.0\.0\.1:(\d+)", " ".join(redis_proc.cmdline()))  # (redis-server renames itself)
    assert port, redis_proc.cmdline()
    password = (Path(runner.directory) / "redis" / "password").read_text().strip()
    api = chp_api(runner)
    app = create_app({"redis_url": f"redis://:{urllib.parse.quote(password, safe='')}@127.0.0.1:{port.group(1)}/0",
                      "docker_host": docker_host, "instance_name": runner.settings["instance_name"],
                      "proxy_api_url": api.url, "proxy_auth_token": (runner.directory / "proxy_auth_token")
                      .read_text().strip(), "public_url": runner.url})
    return app, DockerLauncher(docker_client(docker_host), app.config["BINDERY"])


def test_a_plain_link_ends_under_user_id_on_bindery_s_origin_and_survives_a_proxy_crash(
        page: Any, runner: Runner, git_server: GitServer, docker_host: str) -> None:
    repo_url = make_repo(git_server, LAB_IMAGE, {"hello.ipynb": json.dumps(NOTEBOOK),
                                                 "README.md": "# A Bindery test repository\n"})
    tokens: list[str] = []  # the server's token, from the loading page's redirect to it
    page.on("request", lambda request: tokens.extend(
        urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query).get("token", [])))
    page.goto(f"{runner.url}/v2/git/{urllib.parse.quote(repo_url, safe='')}/main")
    on_server = re.compile(rf"^{re.escape(runner.url)}/user/[0-9a-z-]+/lab")
    page.wait_for_url(on_server, timeout=BUILD_TIMEOUT_MS)
    page.locator(".jp-DirListing-item", has_text="hello.ipynb").wait_for(timeout=UI_TIMEOUT_MS)
    assert page.locator(".jp-DirListing-item", has_text="README.md").is_visible()
    screenshot(page, "proxy-jupyterlab")
    launch_id = urllib.parse.urlsplit(page.url).path.split("/")[2]
    base = f"/user/{launch_id}/"
    assert tokens, "the loading page passed the token"
    assert page.evaluate(RUN_CODE, [base, tokens[-1], "print(6 * 7)"]).strip() == "42"

    api = chp_api(runner)
    target = api.routes()[f"/user/{launch_id}"]
    assert urllib.parse.urlsplit(target).hostname == "127.0.0.1", target

    # CHP killed as the OOM killer would: started again, and its routes rebuilt from Redis
    pid, _ = runner.kill("proxy")
    runner.wait_restarted("proxy", pid)
    api = chp_api(runner)
    wait_for(lambda: api.answers() and api.routes().get(f"/user/{launch_id}") == target, 30,
             lambda: f"the route to come back:\n{runner.output()[-2000:]}")
    assert requests.get(f"{runner.url}{base}api", params={"token": tokens[-1]}, timeout=10).status_code == 200
    page.reload()
    page.locator(".jp-DirListing-item", has_text="hello.ipynb").wait_for(timeout=UI_TIMEOUT_MS)
    assert page.evaluate(RUN_CODE, [base, tokens[-1], "print('again')"]).strip() == "again"

    # launcher.stop (a cancelled launch, abandon): the server and its route go
    app, launcher = launcher_of(runner, docker_host)
    with app.app_context():
        assert launcher.stop(launch_id) == 1
    assert f"/user/{launch_id}" not in api.routes()
    started = time.monotonic()
    while time.monotonic() - started < 5:  # the web's own 404 page, or CHP's 503: not the server
        answer = requests.get(f"{runner.url}{base}api", params={"token": tokens[-1]}, timeout=10)
        if answer.status_code != 200:
            break
    assert answer.status_code in (404, 503), answer.status_code
