"""`make run` after a SIGKILL: seconds from killing each role to the next launch that reached ``ready``.

One runner (``python -m app.runner``, as `make run` starts it) with its embedded Redis,
both workers, beat, gunicorn and Flower; launches use the ``bench`` launcher (no
container per launch, so the figure is the supervision's and the pipeline's, not the
engine's start-up).  An image is built once; then, for each role in turn, its main
process is SIGKILLed (as the OOM killer would), and as soon as the runner has seen it
die a launch of the built image is asked for and followed (reconnecting, as a browser
does, while the web is away) until ``ready``.  For the build worker, whose death does
not stop a launch of a built image, the time to a new build (a new commit) is given
too, next to the same build with no kill.

    .venv/bin/python bench/supervision.py [--rounds 3] [--json] [--keep]
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

from _harness import NO_CLIENT_LIMITS, Bench, BenchError, emit, main_wrapper, parser, remove_image, say

from tests.conftest import BASE_IMAGE
from tests.system.supervised import Runner, follow, launch_url, wait_ended

ROLES = ("launch-worker", "build-worker", "beat", "web", "redis", "flower")


def launch_seconds(runner: Runner, url: str, since: float, timeout: float = 180) -> float:
    client = follow(url)
    ended = wait_ended(client, timeout)
    final = client.events[-1][1]
    if final["phase"] != "ready":
        raise BenchError(f"launch did not end ready: {client.events[-3:]}")
    return ended - since


def kill_and_wait_seen(runner: Runner, role: str) -> tuple[int, float]:
    """SIGKILL the role; return (pid, when it was killed), once the runner has seen it die."""
    pid, killed = runner.kill(role)
    deadline = time.monotonic() + 10
    while f"{role} (pid {pid}) was killed by SIGKILL" not in runner.output():
        if time.monotonic() > deadline:
            raise BenchError(f"the runner did not notice {role} die:\n{runner.output()[-2000:]}")
        time.sleep(0.02)
    return pid, killed


def run() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2, help="kills per role, one after the other (default 2)")
    args = p.parse_args()
    rows: list[dict[str, Any]] = []
    with Bench("supervision", keep=args.keep) as bench:
        engine = bench.engine()
        git = bench.git_server()
        runner = Runner(bench.directory / "runner", {
            "docker_host": bench.docker_host, "image_prefix": "localhost/bindery-bench-",
            "launcher": "bench", "launch_concurrency": 50, "keepalive_interval": 1,
            "build_lock_ttl": 6, "launch_visibility_timeout": 5, "health_cache_seconds": 0,
            "log_format": "text", **NO_CLIENT_LIMITS})
        bench.callback(runner.stop)
        say("starting the runner ...")
        started = time.monotonic()
        runner.start()
        say(f"serving after {time.monotonic() - started:.1f} s")
        images: list[str] = []
        bench.callback(lambda: [remove_image(engine, image) for image in images])

        def new_repo() -> str:
            repo_url, _ = git.make_repo(f"FROM {BASE_IMAGE}\nRUN echo {uuid.uuid4().hex} > /tmp/id\n")
            return repo_url

        def build(repo_url: str, since: float) -> float:
            client = follow(launch_url(runner, repo_url, "?build_only=true"))
            ended = wait_ended(client, 600)
            final = client.events[-1][1]
            if final["phase"] != "ready":
                raise BenchError(f"build did not end ready: {client.events[-3:]}")
            images.append(final["imageName"])
            return ended - since

        built = new_repo()
        say(f"first build: {build(built, time.monotonic()):.1f} s")
        url = launch_url(runner, built)
        baseline = [launch_seconds(runner, url, time.monotonic()) for _ in range(3)]
        rows.append({"role": "(no kill)", "kill 1 s": statistics.median(baseline)})
        builds_plain = [build(new_repo(), time.monotonic()) for _ in range(args.rounds)]
        for role in ROLES:
            figures, builds = [], []
            for _ in range(args.rounds):
                pid, killed = kill_and_wait_seen(runner, role)
                figures.append(launch_seconds(runner, url, killed))
                if role == "build-worker":
                    builds.append(build(new_repo(), killed))
                runner.wait_restarted(role, pid)
                runner.wait_serving(120)  # back to healthy before the next kill
            # Kills follow each other within runner_restart_window, so each waits twice as long as the last.
            row: dict[str, Any] = {"role": role, **{f"kill {n + 1} s": f for n, f in enumerate(figures)}}
            if builds:
                row.update({f"build after kill {n + 1} s": b for n, b in enumerate(builds)})
                row["build, no kill s"] = statistics.median(builds_plain)
            rows.append(row)
            say(f"{role}: {', '.join(f'{f:.1f}' for f in figures)} s")
        status = runner.stop()
        if status != 0:
            raise BenchError(f"the runner ended with {status}")
        left = runner.left_running()
        if left:
            raise BenchError(f"processes left after Ctrl-C: {left}")
    emit(args, {"rows": rows, "notes": [
        "launcher bench (no container): the time is the restart plus Bindery's own launch path",
        "each kill is a SIGKILL of the role's main process; the launch is asked for once the runner saw it die",
        "kills of one role follow each other within runner_restart_window: the restart delay doubles each time",
    ]}, [("seconds from SIGKILL to the next launch that reached ready", rows)])
    return 0


if __name__ == "__main__":
    main_wrapper(run)
