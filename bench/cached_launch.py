"""Cached launches with the ``bench`` launcher: what Bindery itself adds around a launch.

An image is built and pushed once through Bindery (``?build_only=true``); every
launch then asks for it by its 40-hex sha (no git call, like a persistent link),
so each launch is: web request → resolve_ref → check_registry (one registry
HEAD) → launch (bench launcher) → ``ready``.

Figures: per-client latency from sending the request to receiving ``ready``
(p50/p99 ms), launches/s = N / wall time of a round, and the arrival of each
phase (p50 ms) to show where the time goes.  Then, with bench_launch_delay=2,
100 concurrent launches: all must overlap, so all are ready in a little over 2 s.

    .venv/bin/python bench/cached_launch.py [--json] [--rounds-1 20] [--rounds 5]
"""

from __future__ import annotations

import asyncio
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _harness import (
    REGISTRY_PORT,
    Bench,
    BenchError,
    SSEConnection,
    build_once,
    build_path,
    cpu_seconds,
    emit,
    host_port,
    main_wrapper,
    parser,
    percentile,
    port_busy,
    quick_dockerfile,
    raise_nofile,
    remove_image,
    say,
    stack_processes,
)

PHASES = ("waiting", "built", "launching", "ready")


async def one_launch(host: str, port: int, path: str, timeout: float) -> dict[str, Any]:
    """Request → ``ready``; returns the arrival time (s after sending) of each phase."""
    t0 = time.perf_counter()
    arrivals: dict[str, float] = {}
    conn = await SSEConnection.open(host, port, path, timeout=timeout)
    try:
        async with asyncio.timeout(timeout):
            async for kind, data, _ in conn.items():
                if kind != "event":
                    continue
                arrivals.setdefault(data.get("phase"), time.perf_counter() - t0)
                if data.get("phase") == "failed":
                    raise BenchError(f"launch failed: {data}")
                if data.get("phase") == "ready":
                    return arrivals
    finally:
        conn.close()
    raise BenchError(f"stream ended before ready: {arrivals}")


async def round_of(host: str, port: int, path: str, n: int, timeout: float) -> tuple[float, list[Any]]:
    t0 = time.perf_counter()
    results = await asyncio.gather(*(one_launch(host, port, path, timeout) for _ in range(n)),
                                   return_exceptions=True)
    return time.perf_counter() - t0, results


def run_rounds(url: str, path: str, n: int, rounds: int, timeout: float = 60,
               roles: dict[str, list[int]] | None = None) -> dict[str, Any]:
    host, port = host_port(url)
    server0 = cpu_seconds(roles or {})
    latencies: list[float] = []
    phases: dict[str, list[float]] = {p: [] for p in PHASES}
    walls: list[float] = []
    failures: list[str] = []
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(rounds):
        wall, results = asyncio.run(round_of(host, port, path, n, timeout))
        walls.append(wall)
        for result in results:
            if isinstance(result, BaseException):
                failures.append(repr(result)[:200])
                continue
            latencies.append(result["ready"])
            for phase in PHASES:
                if phase in result:
                    phases[phase].append(result[phase])
        time.sleep(0.2)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    server1 = cpu_seconds(roles or {})
    done = max(1, len(latencies))
    server_cpu_ms = {role: (server1[role] - server0[role]) * 1000 / done for role in server1}
    return {
        "n": n, "rounds": rounds, "launches": len(latencies), "failed": len(failures),
        "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
        "launches_per_s": statistics.median([n / w for w in walls]) if walls else float("nan"),
        "wall_s_median": statistics.median(walls) if walls else float("nan"),
        "wall_s_max": max(walls, default=float("nan")),
        "phase_p50_ms": {p: percentile(v, 50) * 1000 for p, v in phases.items()},
        "client_cpu_s_per_launch": client_cpu / max(1, len(latencies)),
        "server_cpu_ms_per_launch": server_cpu_ms,
        "failures": failures[:5],
    }


def start_profilers(stack: Any, directory: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy on the gunicorn worker and the gevent launch worker (raw collapsed stacks)."""
    import psutil

    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    directory.mkdir(parents=True, exist_ok=True)
    targets = {"web": psutil.Process(stack.processes["web"].pid).children()[0].pid,
               "launch": stack.processes["launch"].pid}
    procs = []
    for role, pid in targets.items():
        procs.append(subprocess.Popen([str(py_spy), "record", "--pid", str(pid), "--rate", "200",
                                       "--format", "raw", "--output", str(directory / f"{role}.txt"),
                                       "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1)
    return procs


def stop_profilers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--rounds-1", type=int, default=20, help="rounds at N=1")
    p.add_argument("--rounds", type=int, default=5, help="rounds at N=10 and N=50")
    p.add_argument("--delay-rounds", type=int, default=3, help="rounds of 100 launches with delay 2 s")
    p.add_argument("--delay", type=float, default=2.0, help="bench_launch_delay of the second stack")
    p.add_argument("--delay-n", type=int, default=100)
    p.add_argument("--profile", type=Path, help="write py-spy profiles (raw) of the N=50 rounds here")
    args = p.parse_args()
    raise_nofile()
    if port_busy(REGISTRY_PORT):
        raise BenchError(f"127.0.0.1:{REGISTRY_PORT} is busy (a test run or another registry?); "
                         "stop it first — this benchmark starts its own registry there")

    result: dict[str, Any] = {"notes": []}
    with Bench("cached", keep=args.keep) as bench:
        engine = bench.engine()
        registry = bench.registry()
        git = bench.git_server()
        repo_url, sha = git.make_repo(quick_dockerfile())
        base = {"registry_url": registry.url, "image_prefix": f"127.0.0.1:{REGISTRY_PORT}/bindery-bench-",
                "docker_host": bench.docker_host, "launcher": "bench"}
        stack = bench.stack("nodelay", {**base, "bench_launch_delay": 0})
        image = build_once(stack, repo_url, sha)
        bench.callback(remove_image, engine, image)
        path = build_path(repo_url, sha)

        say("warm-up ...")
        run_rounds(stack.url, path, 1, 3)
        run_rounds(stack.url, path, 10, 1)

        rows = []
        for n, rounds in ((1, args.rounds_1), (10, args.rounds), (50, args.rounds)):
            say(f"N={n}: {rounds} rounds ...")
            profilers = start_profilers(stack, args.profile) if args.profile and n == 50 else []
            try:
                rows.append(run_rounds(stack.url, path, n, rounds, roles=stack_processes(stack, registry)))
            finally:
                stop_profilers(profilers)
        result["no_delay"] = rows
        stack.stop()

        delayed = bench.stack("delay", {**base, "bench_launch_delay": args.delay})
        say("warm-up (delay) ...")
        run_rounds(delayed.url, path, 1, 1)
        say(f"N={args.delay_n} with delay {args.delay} s: {args.delay_rounds} rounds ...")
        d = run_rounds(delayed.url, path, args.delay_n, args.delay_rounds, timeout=120,
                       roles=stack_processes(delayed, registry))
        d["delay_s"] = args.delay
        result["delay"] = d
        if d["wall_s_max"] > args.delay + 1:
            result["notes"].append(f"{args.delay_n} launches with a {args.delay} s launcher took up to "
                                   f"{d['wall_s_max']:.2f} s: they did not all overlap")

    tables = [
        ("cached launch, bench launcher, no delay (latency = request sent -> ready received)",
         [{"N": r["n"], "rounds": r["rounds"], "ok": r["launches"], "failed": r["failed"],
           "p50 ms": r["p50_ms"], "p99 ms": r["p99_ms"], "max ms": r["max_ms"],
           "launches/s": r["launches_per_s"], "client cpu ms/launch": r["client_cpu_s_per_launch"] * 1000}
          for r in rows]),
        ("phase arrival, p50 ms after the request",
         [{"N": r["n"], **{p: r["phase_p50_ms"][p] for p in PHASES}} for r in rows]),
        ("server CPU ms per launch, by process (user+sys)",
         [{"N": r["n"], **r["server_cpu_ms_per_launch"],
           "total": sum(r["server_cpu_ms_per_launch"].values())} for r in [*rows, d]]),
        (f"{d['n']} concurrent launches, bench_launch_delay={d['delay_s']} s",
         [{"N": d["n"], "rounds": d["rounds"], "ok": d["launches"], "failed": d["failed"],
           "all ready s (median)": d["wall_s_median"], "all ready s (max)": d["wall_s_max"],
           "p50 ms": d["p50_ms"], "p99 ms": d["p99_ms"], **{f"{p} p50": d["phase_p50_ms"][p] for p in PHASES}}]),
    ]
    for r in [*rows, d]:
        for f in r["failures"]:
            result["notes"].append(f"N={r['n']} failure: {f}")
    emit(args, result, tables)
    return 0 if all(r["failed"] == 0 for r in [*rows, d]) else 1


if __name__ == "__main__":
    main_wrapper(main)
