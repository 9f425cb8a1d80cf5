"""`make run`'s runner: everything starts, answers, and stops together on Ctrl-C (SIGINT); the
supervision's restart policy and process handling, on real short-lived processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import psutil
import pytest
import requests

from app.config import load_config
from app.redis_server import free_port
from app.runner import (
    Child,
    Crashes,
    EngineService,
    RestartPolicy,
    Supervisor,
    commands,
    describe_exit,
    proxy_child,
    served_address,
    served_public_url,
    wait_for_web,
)
from tests.stack import ROOT

# --- the restart policy ----------------------------------------------------------------------------

def test_restart_delay_doubles_and_the_limit_counts_crashes_within_the_window() -> None:
    crashes = Crashes(RestartPolicy(delay=1, max_delay=30, limit=5, window=60))
    assert [crashes.record(t) for t in (0, 2, 5, 10)] == [1, 2, 4, 8]
    assert crashes.record(19) is None, "the fifth crash within 60 s gives up"

    spread = Crashes(RestartPolicy(delay=1, max_delay=30, limit=5, window=60))
    assert [spread.record(t) for t in (0, 50, 100, 150, 200, 250)] == [1, 2, 2, 2, 2, 2], \
        "crashes a minute apart never reach the limit; only the ones within the window count"


def test_restart_delay_stops_growing_at_the_maximum() -> None:
    crashes = Crashes(RestartPolicy(delay=1, max_delay=30, limit=100, window=3600))
    assert [crashes.record(t) for t in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_policy_comes_from_the_config_schema() -> None:
    config = load_config(environ={"BINDERY_RUNNER_RESTART_LIMIT": "3", "BINDERY_RUNNER_RESTART_WINDOW": "20"})
    assert RestartPolicy.from_config(config) == RestartPolicy(delay=1.0, max_delay=30.0, limit=3, window=20)


def test_exit_statuses_read_as_a_log_line_should_say_them() -> None:
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(3) == "exited with status 3"


# --- supervising real processes -------------------------------------------------------------------

FAST = RestartPolicy(delay=0.05, max_delay=0.2, limit=3, window=60)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def run_in_thread(supervisor: Supervisor) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(supervisor.run()), daemon=True)
    thread.start()
    return thread, result


def test_a_process_that_keeps_crashing_stops_the_service_naming_it_and_its_last_lines(
        capfd: pytest.CaptureFixture[str]) -> None:
    crasher = Child("crasher", python("import sys; print('line one'); print('boom: bad setting', "
                                      "file=sys.stderr); sys.exit(3)"), dict(os.environ), FAST)
    steady = Child("steady", python("import time; time.sleep(60)"), dict(os.environ), FAST)
    supervisor = Supervisor([steady, crasher])
    started = time.monotonic()
    assert supervisor.run() == 1
    assert time.monotonic() - started < 10
    assert supervisor.gave_up is crasher and crasher.starts == FAST.limit and steady.starts == 1
    assert steady.process is not None and steady.process.returncode == -signal.SIGTERM, "the rest was stopped"
    err = capfd.readouterr().err
    assert err.count("crasher (pid") == FAST.limit
    assert "exited with status 3; starting it again in 0.05 s (crash 1 of 3" in err
    assert "starting it again in 0.1 s (crash 2 of 3" in err
    final = err[err.rindex("bindery: crasher"):]
    assert "it stopped 3 times within 60 s, so the service stops. Last lines of crasher:" in final
    assert "line one" in final and "boom: bad setting" in final, "its last lines, stdout and stderr"


def test_output_is_relayed_unchanged_and_its_tail_kept(capfd: pytest.CaptureFixture[str]) -> None:
    child = Child("talker", python("import sys\nfor i in range(300): print(f'out {i}')\n"
                                   "print('to stderr', file=sys.stderr)"), dict(os.environ), FAST)
    child.start()
    assert child.process is not None
    child.process.wait(10)
    lines = child.last_lines(1000)
    assert len(lines) == 200 and lines[-1] in ("to stderr", "out 299"), "a bounded ring of recent lines"
    out, err = capfd.readouterr()
    assert out.splitlines() == [f"out {i}" for i in range(300)]
    assert err == "to stderr\n"


def test_a_dead_process_leaves_nothing_behind_in_its_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild"
    leader = Child("leader", ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; exec sleep 60"], dict(os.environ), FAST)
    supervisor = Supervisor([leader])
    thread, result = run_in_thread(supervisor)
    try:
        deadline = time.monotonic() + 10
        # (the shell may write its file before the supervisor's thread has noted the pid)
        while not pidfile.exists() or not pidfile.read_text().strip() or leader.pid is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        grandchild = psutil.Process(int(pidfile.read_text()))
        first = leader.pid
        os.kill(first, signal.SIGKILL)  # as the OOM killer would: the leader only
        grandchild.wait(10)  # the leader's orphan was killed with its group, not left running
        deadline = time.monotonic() + 10
        while leader.pid == first or not leader.running():
            assert time.monotonic() < deadline, "started again"
            time.sleep(0.05)
        assert leader.crashes.recent == 1
    finally:
        supervisor.stop()
        thread.join(30)
    assert result == [0], "Ctrl-C/SIGTERM ends with status 0"


def test_stop_means_stop_no_restart_during_shutdown() -> None:
    crasher = Child("crasher", python("import time; time.sleep(0.3)"), dict(os.environ),
                    RestartPolicy(delay=0.5, max_delay=1, limit=100, window=60))
    supervisor = Supervisor([crasher])
    thread, result = run_in_thread(supervisor)
    deadline = time.monotonic() + 10
    while crasher.restart_at is None:  # it exited and waits for its restart
        assert time.monotonic() < deadline
        time.sleep(0.02)
    supervisor.stop()
    thread.join(10)
    assert result == [0] and crasher.starts == 1, "not started again once stopping began"


def test_stop_goes_in_stages_web_first_redis_last(tmp_path: Path) -> None:
    record = tmp_path / "stopped"
    code = ("import signal, sys, time\n"
            "def stop(*_):\n"
            f"    open({str(record)!r}, 'a').write(sys.argv[1] + '\\n'); time.sleep(0.3); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, stop)\n"
            "print('ready', flush=True)\n"
            "while True: time.sleep(1)\n")
    children = [Child(role, [*python(code), role], dict(os.environ), FAST)
                for role in ("redis", "build-worker", "launch-worker", "beat", "web")]
    supervisor = Supervisor(children)
    thread, result = run_in_thread(supervisor)
    deadline = time.monotonic() + 20
    while not all("ready" in child.tail for child in children):  # each has its SIGTERM handler
        assert time.monotonic() < deadline, [list(child.tail) for child in children]
        time.sleep(0.05)
    supervisor.stop()
    thread.join(30)
    assert result == [0]
    stopped = record.read_text().split()
    assert set(stopped[:2]) == {"beat", "web"} and set(stopped[2:4]) == {"build-worker", "launch-worker"}, stopped
    assert stopped[4:] == ["redis"], "Redis goes last: the others need it to stop cleanly"


def test_roles_and_queues() -> None:
    roles = commands(load_config({"launch_workers": 1}, environ={}), python="python")
    assert set(roles) == {"build-worker", "launch-worker", "beat", "web", "flower"}
    build, launch = roles["build-worker"], roles["launch-worker"]
    assert build[build.index("-Q") + 1] == "build" and build[build.index("-P") + 1] == "prefork"
    assert launch[launch.index("-Q") + 1] == "launch" and launch[launch.index("-P") + 1] == "gevent"


def _wait(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer")


@pytest.mark.integration
def test_runner_serves_with_embedded_redis_and_stops_everything_on_sigint(tmp_path: Path) -> None:
    port, flower = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINDERY_") and k != "REDIS_URL"}
    env.update({"PORT": str(port), "BINDERY_FLOWER_PORT": str(flower), "BINDERY_DATA_DIR": str(tmp_path),
                "BINDERY_LAUNCHER": "bench", "BINDERY_LAUNCH_CONCURRENCY": "20",
                "BINDERY_FLOWER_BASIC_AUTH": "operator:flower-secret"})
    log = open(tmp_path / "runner.log", "wb")  # a pipe nobody reads would fill and block the service
    runner = subprocess.Popen([sys.executable, "-m", "app.runner"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait(f"http://127.0.0.1:{port}/versions")
        _wait(f"http://127.0.0.1:{flower}/healthcheck")
        assert requests.get(f"http://127.0.0.1:{flower}/", timeout=5).status_code == 401, "Flower needs a login"
        assert requests.get(f"http://127.0.0.1:{flower}/", auth=("operator", "flower-secret"),
                            timeout=5).status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
        assert not any("flower-secret" in " ".join(p.cmdline()) for p in psutil.Process(runner.pid).children(True))
        children = psutil.Process(runner.pid).children(recursive=True)
        assert len(children) >= 6, "redis, two workers, beat, web and flower"
        assert (tmp_path / "redis" / "appendonlydir").exists() or any(
            p.name.startswith("appendonly") for p in (tmp_path / "redis").iterdir()), "persistence on"
        runner.send_signal(signal.SIGINT)
        assert runner.wait(60) == 0
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"still running after Ctrl-C: {[p.pid for p in alive]}"
        output = (tmp_path / "runner.log").read_text(errors="replace")
        assert f"bindery: serving on http://127.0.0.1:{port}/" in output
        assert "celery@" in output or "ready." in output, "the children's output is relayed"
        assert "flower-secret" not in output
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        log.close()


def test_launch_workers_split_launch_concurrency_and_default_to_one_per_core() -> None:
    roles = commands(load_config({"launch_workers": 3, "launch_concurrency": 500}, environ={}), python="python")
    launch = {role: command for role, command in roles.items() if role.startswith("launch-worker")}
    assert sorted(launch) == ["launch-worker", "launch-worker-2", "launch-worker-3"]
    assert {command[command.index("-c") + 1] for command in launch.values()} == {"166"}
    assert len({command[command.index("-n") + 1] for command in launch.values()}) == 3  # distinct node names
    cores = len(os.sched_getaffinity(0))
    default = commands(load_config(environ={}), python="python")
    assert sum(role.startswith("launch-worker") for role in default) == cores


@pytest.mark.parametrize("task_events", [False, True])
def test_flower_keeps_task_events_off_unless_they_are_on(task_events: bool) -> None:
    flower = commands(load_config({"task_events": task_events}, environ={}), python="python")["flower"]
    assert ("--enable_events=False" in flower) is not task_events


# --- the start-up line and the engine service ------------------------------------------------------

@pytest.mark.parametrize(("listen", "shown", "probed"), [
    ("127.0.0.1", "http://127.0.0.1:8600/", "http://127.0.0.1:8600/"),
    ("0.0.0.0", "http://0.0.0.0:8600/", "http://127.0.0.1:8600/"),
    ("::", "http://[::]:8600/", "http://[::1]:8600/"),
    ("192.0.2.10", "http://192.0.2.10:8600/", "http://192.0.2.10:8600/"),
])
def test_the_start_up_line_names_the_address_gunicorn_binds(listen: str, shown: str, probed: str) -> None:
    assert served_address(load_config({"listen_address": listen, "port": 8600}, environ={})) == (shown, probed)


def test_the_proxy_takes_the_public_address_and_the_web_moves_behind_it(tmp_path: Path) -> None:
    config = load_config({"listen_address": "0.0.0.0", "port": 8600, "data_dir": str(tmp_path),
                          "trusted_proxy_hops": 1, "redis_url": "redis://127.0.0.1:1/0"}, environ={})
    env = {"PATH": os.environ["PATH"], "REDIS_URL": "redis://:pw@127.0.0.1:1/0"}
    child, web_env = proxy_child(config, env, RestartPolicy())
    token = (tmp_path / "proxy_auth_token").read_text().strip()
    command = child.command
    assert command[command.index("--ip") + 1:][:3] == ["0.0.0.0", "--port", "8600"]
    assert command[command.index("--api-ip") + 1] == "127.0.0.1"
    web_port = web_env["BINDERY_PORT"]
    assert command[command.index("--default-target") + 1] == f"http://127.0.0.1:{web_port}"
    assert token not in " ".join(command), "the token is never on a command line"
    assert child.env["CONFIGPROXY_AUTH_TOKEN"] == token and "REDIS_URL" not in child.env
    assert env["BINDERY_PROXY_AUTH_TOKEN"] == token and env["BINDERY_PUBLIC_URL"] == "http://127.0.0.1:8600"
    assert env["BINDERY_PROXY_API_URL"] == f"http://127.0.0.1:{command[command.index('--api-port') + 1]}"
    assert web_env["BINDERY_LISTEN_ADDRESS"] == "127.0.0.1" and web_env["BINDERY_TRUSTED_PROXY_HOPS"] == "2"
    assert "BINDERY_PORT" not in env, "only the web moves"


def test_with_a_certificate_the_proxy_serves_https() -> None:
    config = load_config({"port": 8443, "proxy_ssl_key": "/k.pem", "proxy_ssl_cert": "/c.pem"}, environ={})
    assert served_public_url(config) == "https://127.0.0.1:8443"
    assert served_address(config) == ("https://127.0.0.1:8443/", "https://127.0.0.1:8443/")
    assert served_public_url({**config, "public_url": "https://binder.example.org/"}) == "https://binder.example.org"


def test_waiting_for_the_web_ends_when_it_answers_or_when_stopping() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    assert wait_for_web(url, lambda: False, timeout=0.5) is False, "nothing listens yet"
    assert wait_for_web(url, lambda: True) is False, "stopping: no line"

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)  # any answer: the web is up, even while a dependency is not
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", port), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert wait_for_web(url, lambda: False, timeout=10) is True
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Detached:
    """A process started as engine.sh starts the engine service: in the background, not our child."""

    def __init__(self) -> None:
        out = subprocess.run(["sh", "-c", "sleep 120 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True,
                             check=True, timeout=10).stdout
        self.pid = int(out.strip())
        self.process = psutil.Process(self.pid)
        self.started = self.process.create_time()

    def gone(self, timeout: float = 10) -> bool:
        try:
            self.process.wait(timeout)
        except psutil.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        """Ours to stop, by id, and only while the pid is still this process."""
        try:
            if self.process.create_time() == self.started:
                self.process.kill()
        except psutil.NoSuchProcess:
            pass


def test_the_engine_service_make_run_started_is_stopped_by_its_pid() -> None:
    service = Detached()
    try:
        EngineService(service.pid).stop(timeout=10)
        assert service.gone(), "SIGTERM stops it"
    finally:
        service.kill()


def test_a_reused_pid_is_left_alone() -> None:
    service = Detached()
    try:
        engine = EngineService(service.pid)
        engine.started = (engine.started or 0) - 100  # as if the pid now named a later process
        engine.stop(timeout=1)
        assert not service.gone(0.5), "another process with the same pid must not be stopped"
        EngineService(2**22 + 1).stop()  # above pid_max's ceiling: no such process, nothing to do
    finally:
        service.kill()


def test_the_runner_stops_the_engine_service_even_when_its_config_is_refused(tmp_path: Path) -> None:
    """The cheapest whole path: `make run`'s command line, a bad setting, and the engine stopped anyway."""
    service = Detached()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BINDERY_") and k != "REDIS_URL"}
        env.update({"BINDERY_RATE_LIMT": "30", "BINDERY_DATA_DIR": str(tmp_path)})
        runner = subprocess.run([sys.executable, "-m", "app.runner", "--engine-pid", str(service.pid)],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert runner.returncode == 2
        assert "BINDERY_RATE_LIMT: unknown setting; did you mean rate_limit" in runner.stderr
        assert f"stopping the engine service this run started (pid {service.pid})" in runner.stderr
        assert service.gone()
    finally:
        service.kill()
