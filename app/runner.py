"""``make run``: the whole service on one machine, kept running until Ctrl-C.

Starts the embedded Redis (unless ``redis_url`` is set), the build worker
(prefork), the launch worker (gevent), beat, gunicorn (gevent) and Flower, and
supervises them: a process that exits while the service runs is started again
with the same command (Redis on the same port and data, so queued launches and
event streams survive it), after a delay that starts at
``runner_restart_delay`` and doubles with each crash inside
``runner_restart_window`` up to ``runner_restart_max_delay``.  A process that
crashes ``runner_restart_limit`` times inside the window stops the whole
service, with a message naming it and its last lines of output.  SIGINT
(Ctrl-C), SIGTERM and SIGHUP stop everything in order, and nothing is restarted
once stopping began; then the container engine's service goes too when `make run`
started it for this run (``--engine-pid``, from scripts/engine.sh), never an engine
that was already running.  ``bindery: serving on http://<listen_address>:<port>/``
is printed once the web answers there, not when gunicorn is merely started.

These are the semantics of systemd's ``Restart=always`` with ``StartLimitBurst``
/ ``StartLimitIntervalSec`` and of supervisor's ``startretries`` (every role is
a long-running service, so any exit, even status 0, is unexpected here).  A
loop of our own instead of supervisor or circus, because what we need from one
is small and specific: the children share environment the runner computes at
start (the embedded Redis's URL, the metrics directory), Redis must be up
before the others start and stopped after them, their output must still reach
this terminal unchanged, and each process's recent output must be at hand for
the message that ends the service.  supervisor would need a generated config
file, its own daemon and ``supervisorctl`` for all that; circus adds ZeroMQ and
its own process model; both are dependencies an operator then has to learn
for a single machine.  Where a machine runs systemd, ``python -m app.cli
systemd`` writes unit files with the same policy instead
(docs/operating-systemd.md).

Each process runs in its own session (Ctrl-C reaches only the runner), and when
its main process dies, whatever it left in its process group (gunicorn's
workers, the prefork pool) is killed before it starts again, so a restarted
gunicorn finds its port free and no orphan keeps building.  The group is
killed while the dead main process is still an unreaped zombie, so its id
cannot have been reused by anyone else.

With ``proxy`` (the default), configurable-http-proxy (CHP) is one of the children: it
listens on ``listen_address:port`` (Bindery's one public address), routes ``/`` to gunicorn,
which then listens on an internal 127.0.0.1 port, and ``/user/<id>/`` to launched servers
(tasks/backends/proxy_routes.py).  Its API listens on 127.0.0.1 only; its token is made once
in ``data_dir`` and reaches CHP and the other children in their environment, never on a
command line.  After every start of CHP its routes are rebuilt from those recorded in Redis
(``reconcile``), so a CHP that was killed serves every running server again.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
import redis
import requests

from app.config import exposure_warnings, load_config, public_url
from app.errors import ConfigError
from app.redis_server import EmbeddedRedis, free_port
from app.session_secret import ensure_secret
from tasks.backends import proxy_routes
from tasks.backends.user_network import warnings as user_network_warnings

#: Lines of recent output kept per process, and how many of them the stopping message shows.
TAIL_KEPT = 200
TAIL_SHOWN = 20
#: Seconds a process gets to stop on SIGTERM before its whole group is killed.
STOP_TIMEOUT = 15.0
#: Start order: Redis first, since everyone else needs it.
ORDER = ("redis", "proxy", "build-worker", "launch-worker", "beat", "web", "flower")
#: Stop order, a stage at a time: the web stops taking launches and beat stops queueing work first,
#: then the workers finish (or give back) what they hold, and Redis, which they need for that, goes last.
STOP_STAGES = (("proxy", "web", "flower", "beat"), ("launch-worker", "build-worker"), ("redis",))
POLL_SECONDS = 0.2
#: Seconds CHP's API gets to answer after a start.
PROXY_START_TIMEOUT = 30.0


def launch_workers(config: dict) -> int:
    """How many launch worker processes: ``launch_workers``, or one per core when 0."""
    if config["launch_workers"]:
        return int(config["launch_workers"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def commands(config: dict, python: str = sys.executable) -> dict[str, list[str]]:
    """The processes of one Bindery, by role (``launch-worker``, then ``launch-worker-2``... one per process)."""
    celery = [python, "-m", "celery", "-A", "worker"]
    workers = launch_workers(config)
    greenlets = str(max(1, config["launch_concurrency"] // workers))
    launch = {("launch-worker" if n == 1 else f"launch-worker-{n}"):
              [*celery, "worker", "-Q", "launch", "-P", "gevent", "-c", greenlets,
               "-n", "launch@%h" if n == 1 else f"launch{n}@%h", "--loglevel", "INFO"]
              for n in range(1, workers + 1)}
    # Flower turns task events on in every worker unless told not to (its enable_events).
    events = [] if config["task_events"] else ["--enable_events=False"]
    return {
        "build-worker": [*celery, "worker", "-Q", "build", "-P", "prefork",
                         "-c", str(config["build_concurrency"]), "-n", "build@%h", "--loglevel", "INFO"],
        **launch,
        "beat": [*celery, "beat", "--loglevel", "INFO",
                 "-s", str(Path(config["data_dir"]) / "celerybeat-schedule")],
        "web": [python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        "flower": [*celery, "flower", "--address=127.0.0.1", f"--port={config['flower_port']}", *events],
    }


@dataclass(frozen=True)
class RestartPolicy:
    """When a process that exited is started again, and when the runner gives up on it."""

    delay: float = 1.0
    max_delay: float = 30.0
    limit: int = 5
    window: float = 60.0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RestartPolicy:
        return cls(delay=config["runner_restart_delay"], max_delay=config["runner_restart_max_delay"],
                   limit=config["runner_restart_limit"], window=config["runner_restart_window"])


class Crashes:
    """The recent crashes of one process: the wait before its next start, or None to give up."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.times: deque[float] = deque()

    def record(self, now: float) -> float | None:
        """Count a crash at ``now``; return seconds to wait before starting again, None past the limit."""
        self.times.append(now)
        while self.times and self.times[0] <= now - self.policy.window:
            self.times.popleft()
        if len(self.times) >= self.policy.limit:
            return None
        return min(self.policy.delay * 2 ** (len(self.times) - 1), self.policy.max_delay)

    @property
    def recent(self) -> int:
        return len(self.times)


def describe_exit(code: int) -> str:
    """``killed by SIGKILL`` or ``exited with status 1``, as a log line should say it."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def say(message: str) -> None:
    print(f"bindery: {message}", file=sys.stderr, flush=True)


class Child:
    """One supervised process: started in its own session, its output relayed and its tail kept."""

    def __init__(self, role: str, command: list[str], env: dict[str, str], policy: RestartPolicy,
                 ready: Callable[[Child], None] | None = None,
                 restarted: Callable[[Child], None] | None = None) -> None:
        self.role = role
        self.command = command
        self.env = env
        self.ready = ready  # called after the first start; raises if the process does not come up
        self.restarted = restarted  # called after each later start; must not block the supervising loop
        self.crashes = Crashes(policy)
        self.tail: deque[str] = deque(maxlen=TAIL_KEPT)
        self.process: subprocess.Popen[bytes] | None = None
        self.restart_at: float | None = None
        self.starts = 0
        self._relays: list[threading.Thread] = []

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        for relay in self._relays:  # the previous run's output is all read: the tail is of this run
            relay.join(2)
        self.tail.clear()
        self.process = subprocess.Popen(self.command, env=self.env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        start_new_session=True)
        self.starts += 1
        assert self.process.stdout and self.process.stderr
        self._relays = [threading.Thread(target=self._relay, args=(pipe, out), daemon=True,
                                         name=f"relay-{self.role}")
                        for pipe, out in ((self.process.stdout, sys.stdout), (self.process.stderr, sys.stderr))]
        for relay in self._relays:
            relay.start()

    def _relay(self, pipe: IO[bytes], out: IO[str]) -> None:
        """Copy the process's output to ours unchanged, keeping its last lines.

        If our own output goes away (a closed terminal or pipe), the lines are still read and
        kept, so the process never blocks on a full pipe.
        """
        target = out.buffer if hasattr(out, "buffer") else None
        writing = True
        with pipe:
            for line in iter(lambda: pipe.readline(65536), b""):
                self.tail.append(line.decode(errors="replace").rstrip("\n"))
                if not writing:
                    continue
                try:
                    with _OUTPUT_LOCK:
                        if target is not None:
                            target.write(line)
                            target.flush()
                        else:  # a text stream without bytes (tests capturing output)
                            out.write(line.decode(errors="replace"))
                            out.flush()
                except (OSError, ValueError):
                    writing = False

    def running(self) -> bool:
        """Whether the main process is still alive (it is not reaped here; see ``reap``)."""
        if self.process is None or self.process.returncode is not None:
            return False
        try:
            info = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        return info is None

    def reap(self) -> int:
        """The main process has exited: kill what it left in its group, then collect its status."""
        assert self.process is not None
        self._kill_group()  # while it is an unreaped zombie, its id (the group's) is still ours
        return self.process.wait()

    def _kill_group(self) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def terminate(self) -> None:
        """Ask the main process to stop (it stops its own children: gunicorn's workers, the pool)."""
        if self.process is not None and self.running():
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, deadline: float) -> None:
        """Wait for it until ``deadline`` (monotonic), then kill whatever is left of its group."""
        if self.process is None or self.process.returncode is not None:
            return
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.running():
            say(f"{self.role} did not stop within {STOP_TIMEOUT:g} s; killing it")
        self.reap()

    def last_lines(self, count: int = TAIL_SHOWN) -> list[str]:
        """Its last lines of output, once what it wrote before it died has been read."""
        for relay in self._relays:
            relay.join(2)
        return list(self.tail)[-count:]


_OUTPUT_LOCK = threading.Lock()


class Supervisor:
    """Start the children in order, start again the ones that exit, stop them all in stages."""

    def __init__(self, children: Iterable[Child], clock: Callable[[], float] = time.monotonic,
                 started: Callable[[], None] | None = None) -> None:
        self.children = list(children)
        self.clock = clock
        self.started = started  # called once everything has been started
        self.stopping = False
        self.gave_up: Child | None = None

    def stop(self, *_: object) -> None:
        """Signal handler: stop means stop, nothing is started again from here on."""
        self.stopping = True

    def start_all(self) -> None:
        for child in self.children:
            if self.stopping:
                return
            child.start()
            if child.ready:
                child.ready(child)

    def check(self) -> None:
        """One round: notice exits, schedule restarts, start the ones whose wait is over."""
        for child in self.children:
            if self.stopping:
                return
            now = self.clock()
            if child.restart_at is None and child.process is not None and not child.running():
                code = child.reap()
                delay = child.crashes.record(now)
                if delay is None:
                    self.gave_up = child
                    self.stopping = True
                    lines = "\n".join(f"    {line}" for line in child.last_lines()) or "    (no output)"
                    say(f"{child.role} (pid {child.pid}) {describe_exit(code)}; it stopped "
                        f"{child.crashes.recent} times within {child.crashes.policy.window:g} s, so the "
                        f"service stops. Last lines of {child.role}:\n{lines}")
                    return
                child.restart_at = now + delay
                say(f"{child.role} (pid {child.pid}) {describe_exit(code)}; starting it again in {delay:g} s "
                    f"(crash {child.crashes.recent} of {child.crashes.policy.limit} allowed within "
                    f"{child.crashes.policy.window:g} s)")
            elif child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                child.start()
                say(f"{child.role} started again (pid {child.pid})")
                if child.restarted:
                    child.restarted(child)

    def run(self) -> int:
        """Supervise until stopped; 0 after Ctrl-C/SIGTERM, 1 when a process kept crashing."""
        try:
            self.start_all()
            if self.started and not self.stopping:
                self.started()
            while not self.stopping:
                self.check()
                time.sleep(POLL_SECONDS)
        finally:
            self.stop_all()
        return 1 if self.gave_up else 0

    def stop_all(self) -> None:
        self.stopping = True
        for child in self.children:
            child.restart_at = None
        stages = [tuple(c.role for c in self.children if _stage_role(c.role) in stage) for stage in STOP_STAGES]
        staged = {role for stage in stages for role in stage}
        stages.append(tuple(c.role for c in self.children if c.role not in staged))
        for stage in stages:
            members = [child for child in self.children if child.role in stage]
            for child in members:
                child.terminate()
            deadline = time.monotonic() + STOP_TIMEOUT
            for child in members:
                child.wait_stopped(deadline)


def _stage_role(role: str) -> str:
    """``launch-worker-2`` stops with ``launch-worker``."""
    return "launch-worker" if role.startswith("launch-worker") else role


def children_for(config: dict[str, Any], env: dict[str, str]) -> list[Child]:
    """The supervised processes of ``config``, in start order; sets REDIS_URL in ``env``."""
    policy = RestartPolicy.from_config(config)
    found: dict[str, Child] = {}
    if not config["redis_url"]:
        # Redis logs to our output (so its last lines are at hand); same port and data on every start.
        embedded = EmbeddedRedis(Path(config["data_dir"]) / "redis", logfile="")
        embedded.prepare()
        env["REDIS_URL"] = embedded.url  # with its password: children read it, nobody else sees it
        say(f"embedded Redis at {embedded.shown_url} (data and password in {embedded.directory})")
        found["redis"] = Child("redis", embedded.command(), env, policy,
                               ready=lambda child: embedded.wait_ready(child.running))
    web_env = env
    if config["proxy"]:
        found["proxy"], web_env = proxy_child(config, env, policy)
    for role, command in commands(config).items():
        found[role] = Child(role, command, web_env if role == "web" else env, policy)
    return [found[role] for role in ORDER if role in found] + [
        child for role, child in found.items() if role not in ORDER]  # launch-worker-2...


def proxy_command(config: dict[str, Any], executable: str, api_port: int, web_port: int) -> list[str]:
    """CHP on Bindery's public address, its API and the web on loopback (no secret on this line)."""
    command = [executable, "--ip", str(config["listen_address"]).strip("[]"), "--port", str(config["port"]),
               "--api-ip", "127.0.0.1", "--api-port", str(api_port),
               "--default-target", f"http://127.0.0.1:{web_port}"]
    if config["proxy_ssl_key"]:
        command += ["--ssl-key", config["proxy_ssl_key"], "--ssl-cert", config["proxy_ssl_cert"]]
    return command


def proxy_child(config: dict[str, Any], env: dict[str, str], policy: RestartPolicy) -> tuple[Child, dict[str, str]]:
    """CHP as a child, and the web's environment (an internal port behind it).

    Sets the proxy's settings in ``env`` for every child: the launch workers add routes.
    """
    executable = shutil.which("configurable-http-proxy")
    if not executable:
        raise RuntimeError("proxy is on, but configurable-http-proxy is not installed (`npm install -g "
                           "configurable-http-proxy`, as scripts/test-setup.sh does); or set proxy: false")
    token = config["proxy_auth_token"] or ensure_secret(config["data_dir"], "proxy_auth_token", "proxy_auth_token")
    configured = urllib.parse.urlsplit(config["proxy_api_url"] or "")
    api_port, web_port = configured.port or free_port(), free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    env.update({"BINDERY_PROXY_API_URL": api_url, "BINDERY_PROXY_AUTH_TOKEN": token,
                "BINDERY_PUBLIC_URL": served_public_url(config)})
    # CHP appends the client's address to X-Forwarded-For: the web trusts one hop more.
    web_env = {**env, "BINDERY_LISTEN_ADDRESS": "127.0.0.1", "BINDERY_PORT": str(web_port),
               "BINDERY_TRUSTED_PROXY_HOPS": str(config["trusted_proxy_hops"] + 1)}
    proxy_env = {key: value for key, value in env.items() if not key.startswith("BINDERY_") and key != "REDIS_URL"}
    proxy_env["CONFIGPROXY_AUTH_TOKEN"] = token
    api = proxy_routes.ProxyAPI(api_url, token)
    redis_url = config["redis_url"] or env["REDIS_URL"]

    def rebuild(child: Child) -> None:
        """Once CHP's API answers, give it every recorded route (a new CHP knows none)."""
        deadline = time.monotonic() + PROXY_START_TIMEOUT
        while not api.answers():
            if not child.running():
                return  # the supervising loop notices and starts it again
            if time.monotonic() > deadline:
                raise RuntimeError(f"configurable-http-proxy's API did not answer within {PROXY_START_TIMEOUT:g} s")
            time.sleep(0.1)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            added, deleted = proxy_routes.reconcile(client, api)
        except (requests.RequestException, redis.RedisError) as exc:
            say(f"WARNING: the proxy's routes were not rebuilt ({type(exc).__name__}); servers launched "
                "before its start are unreachable until it is restarted")
            return
        finally:
            client.close()
        if added or deleted:
            say(f"proxy routes rebuilt: {added} added, {deleted} removed")

    def rebuild_soon(child: Child) -> None:
        threading.Thread(target=_logged(rebuild), args=(child,), name="proxy-routes", daemon=True).start()

    return Child("proxy", proxy_command(config, executable, api_port, web_port), proxy_env, policy,
                 ready=rebuild, restarted=rebuild_soon), web_env


def _logged(function: Callable[[Child], None]) -> Callable[[Child], None]:
    def run(child: Child) -> None:
        try:
            function(child)
        except RuntimeError as exc:
            say(f"WARNING: {exc}")
    return run


def served_public_url(config: dict[str, Any]) -> str:
    """public_url, else the address served (https:// when CHP has a certificate)."""
    url = public_url(config)
    if config["proxy"] and config["proxy_ssl_key"] and not config["public_url"]:
        url = "https://" + url.removeprefix("http://")
    return url


def served_address(config: dict[str, Any]) -> tuple[str, str]:
    """(the URL the start-up line names, the URL the runner probes): the address gunicorn really binds.

    A wildcard bind (0.0.0.0, ::) is named as such and probed on loopback, which it includes.
    """
    host = str(config["listen_address"]).strip("[]")
    probe = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)

    scheme = "https" if config.get("proxy") and config.get("proxy_ssl_key") else "http"

    def url(name: str) -> str:
        return f"{scheme}://{f'[{name}]' if ':' in name else name}:{config['port']}/"

    return url(host), url(probe)


def wait_for_web(probe: str, stopping: Callable[[], bool], timeout: float | None = None) -> bool:
    """Until the web answers an HTTP request on ``probe`` (any status): True, or False once stopping.

    http.client, not urllib: an http_proxy in the environment must not answer for our own web.
    """
    parts = urllib.parse.urlsplit(probe)
    deadline = None if timeout is None else time.monotonic() + timeout
    while not stopping() and (deadline is None or time.monotonic() < deadline):
        connection = (http.client.HTTPSConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2,
                                                  # the certificate names the domain, not this loopback probe
                                                  context=ssl._create_unverified_context())  # noqa: S323
                      if parts.scheme == "https" else
                      http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2))
        try:
            connection.request("GET", "/versions")
            connection.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            time.sleep(POLL_SECONDS)
        finally:
            connection.close()
    return False


class EngineService:
    """The container engine's service that `make run` started for this run (scripts/engine.sh's pid).

    Stopped with the rest on Ctrl-C, by that pid only, and only while it is still the process that
    was running when the runner started (its start time is compared, so a reused pid is left alone).
    An engine the runner did not start (Docker, a Podman service somebody else runs) is never touched.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self.started: float | None = psutil.Process(pid).create_time()
        except psutil.Error:
            self.started = None  # already gone: nothing to stop

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.started is None:
            return
        try:
            process = psutil.Process(self.pid)
            if process.create_time() != self.started:
                return
            say(f"stopping the engine service this run started (pid {self.pid})")
            process.terminate()
            process.wait(timeout)
        except psutil.TimeoutExpired:
            say(f"the engine service (pid {self.pid}) did not stop within {timeout:g} s; killing it")
            with contextlib.suppress(psutil.Error):
                process.kill()
        except psutil.Error:
            pass  # it stopped on its own meanwhile


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app.runner", description="Bindery on one machine (make run).")
    parser.add_argument("--engine-pid", type=int, default=None,
                        help="pid of the engine service `make run` started (scripts/engine.sh): stopped with the rest")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engine = EngineService(args.engine_pid) if args.engine_pid else None
    try:
        return serve()
    finally:  # however the service ended, even before it started
        if engine:
            engine.stop()


def serve() -> int:
    """Start everything, supervise until stopped; the exit status of `make run`."""
    try:
        config = load_config()
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    for warning in user_network_warnings(config):
        say(f"WARNING: {warning}")
    if config["proxy"]:  # (the web itself then listens on loopback, so it would not say them)
        for warning in exposure_warnings(config):
            say(f"WARNING: {warning}. See docs/operating.md, before you open it to the world.")
    env = dict(os.environ)
    # Web and workers record metrics into one directory, so the web's /metrics shows them all.
    metrics_dir = Path(config["data_dir"]) / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    shown, probe = served_address(config)

    def announce() -> None:
        """The start-up line, once the web answers: an operator who opens it then finds it serving."""
        if wait_for_web(probe, lambda: supervisor.stopping):
            say(f"serving on {shown} (Flower on http://127.0.0.1:{config['flower_port']}/); "
                "a process that stops is started again; Ctrl-C stops everything")

    try:
        children = children_for(config, env)
    except RuntimeError as err:  # configurable-http-proxy missing
        say(str(err))
        return 2
    supervisor = Supervisor(children, started=lambda: threading.Thread(
        target=announce, name="announce", daemon=True).start())
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # (SIGHUP: its terminal closed)
        signal.signal(signum, supervisor.stop)
    try:
        return supervisor.run()
    except RuntimeError as err:  # the embedded Redis did not come up
        say(str(err))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
