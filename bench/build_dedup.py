"""N concurrent launches of one unbuilt repository: exactly one build, N ``ready``.

One stack (real gunicorn gevent web process, Celery launch worker (gevent) and
build worker (prefork, one build at a time), embedded Redis, the reference
registry on 127.0.0.1:$TEST_REGISTRY_PORT, repo2docker through a wrapper that
records each run) and a git server on loopback.  For each N, a fresh repository
(``FROM localhost/bindery-jupyter:bookworm`` plus one RUN, so an image of its
own) is asked for by N event-stream clients at once, all for the same
``/build/git/<url>/main`` (each launch resolves the branch with git ls-remote).
The clients are spread over several processes (their CPU is not on the web's).

Launchers: ``bench`` (starts no server and says ready at once: N real Jupyter
containers do not fit on a small machine) or ``docker`` (real containers on the
Podman engine; each server's API is asked for a 200, then every container is
removed by id).

Figures per N: repo2docker runs (must be 1), ``ready`` events (must be N),
failures; seconds from the first request to the first ``built``/``ready`` and to
the last ``ready``; request -> ready p50/p99; peak Redis connections (all, and
held by each process); peak RSS of the web and launch workers; CPU seconds by
process; errors/tracebacks/5xx in the stack's logs.  Exits 1 unless every N
had exactly one build and N ``ready``.

    .venv/bin/python bench/build_dedup.py [--n 200 --n 400] [--launcher bench|docker] [--json]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import resource
import time
from collections.abc import Callable
from typing import Any

import psutil
import redis
import requests
from _harness import (
    REGISTRY_PORT,
    Bench,
    BenchError,
    ClientPool,
    Sampler,
    SSEConnection,
    build_path,
    cpu_seconds,
    emit,
    host_port,
    log_problems,
    main_wrapper,
    parser,
    percentile,
    port_busy,
    quick_dockerfile,
    raise_nofile,
    redis_figures,
    remove_containers,
    remove_image,
    remove_instance_containers,
    require_loopback,
    rss_of,
    say,
    stack_processes,
    with_args,
)


async def launch_clients(count: int, report: Any, stop_signal: Any, *, url: str, path: str,
                         timeout: float) -> list[dict[str, Any]]:
    """One client process: ``count`` launches at once, each followed to ``ready`` or ``failed``."""
    host, port = host_port(url)

    async def one() -> dict[str, Any]:
        result: dict[str, Any] = {"sent": time.perf_counter(), "phases": {}, "launch_id": None,
                                  "final": None, "error": None, "ready": None, "image": None}
        try:
            conn = await SSEConnection.open(host, port, path, timeout=120)
            try:
                async with asyncio.timeout(timeout):
                    async for kind, data, event_id in conn.items():
                        if kind != "event":
                            continue
                        if event_id and result["launch_id"] is None:
                            result["launch_id"] = event_id.split("_")[0]
                        phase = data.get("phase")
                        result["phases"].setdefault(phase, time.perf_counter())
                        if phase == "built":
                            result["image"] = data.get("imageName")
                        if phase in ("ready", "failed"):
                            result["final"] = phase
                            result["ready"] = {"url": data.get("url"), "token": data.get("token")} \
                                if phase == "ready" else None
                            if phase == "failed":
                                result["error"] = str(data.get("message", ""))[:200]
                            break
                    else:
                        result["error"] = "the stream ended before ready or failed"
            finally:
                conn.close()
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"[:200]
        return result

    return list(await asyncio.gather(*(one() for _ in range(count))))


def own_cpu() -> float:
    """CPU of this process: mostly the loopback git server's threads (clients run elsewhere)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def connections_by_command(rds: redis.Redis, roles: dict[str, list[int]], redis_port: int) -> dict[str, int]:
    """Redis connections open now, by process and the last command each ran (pools keep them open,
    so after a run this says which pool grew): e.g. ``web:lpush`` is the Celery producer pool."""
    pid_of_port = {c.laddr.port: c.pid for c in psutil.net_connections("tcp")
                   if c.raddr and c.raddr.port == redis_port}
    role_of = {pid: role for role, pids in roles.items() for pid in pids}
    counts: dict[str, int] = {}
    for client in rds.client_list():
        port = int(str(client["addr"]).rsplit(":", 1)[1])
        key = f"{role_of.get(pid_of_port.get(port, -1), 'other')}:{client['cmd']}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def children_cpu(pid: int) -> float:
    """CPU of the subprocesses a process has waited for (the launch worker's git ls-remote)."""
    t = psutil.Process(pid).cpu_times()
    return t.children_user + t.children_system


def runs_of(counter: Any, sha: str) -> int:
    return sum(sha in line for line in counter.read_text().splitlines())


def server_answers(ready: dict[str, Any]) -> bool:
    require_loopback(ready["url"])
    try:
        return requests.get(f"{ready['url']}api", params={"token": ready["token"]}, timeout=10).status_code == 200
    except requests.RequestException:
        return False


def redis_connections(roles: dict[str, list[int]], redis_port: int) -> Callable[[], dict[str, float]]:
    """A probe: TCP connections each process (with its children) holds to Redis now (one pass)."""
    role_of = {pid: role for role, pids in roles.items() if role not in ("redis", "registry") for pid in pids}

    def probe() -> dict[str, float]:
        counts = dict.fromkeys(set(role_of.values()), 0.0)
        for conn in psutil.net_connections("tcp"):
            if conn.raddr and conn.raddr.port == redis_port and conn.pid in role_of:
                counts[role_of[conn.pid]] += 1
        return counts

    return probe


def run_n(stack: Any, registry: Any, git: Any, counter: Any, engine: Any, n: int,
          launcher: str, processes: int, timeout: float) -> dict[str, Any]:
    repo_url, sha = git.make_repo(quick_dockerfile())
    path = build_path(repo_url, "main")
    rds = redis.Redis.from_url(stack.redis.url)
    roles = stack_processes(stack, registry)
    web_workers = roles["web"][1:]  # the gunicorn master forks the workers
    launch_pids = roles["launch"]
    probes = {
        "redis_clients": lambda: redis_figures(rds)["connected_clients"],
        "web_rss": lambda: rss_of(web_workers),
        "launch_rss": lambda: rss_of(launch_pids),
        "conns": redis_connections(roles, stack.redis.port),
    }
    before = {"web_rss": rss_of(web_workers), "launch_rss": rss_of(launch_pids),
              "redis_clients": redis_figures(rds)["connected_clients"]}
    cpu0, cmds0, own0 = cpu_seconds(roles), redis_figures(rds)["commands"], own_cpu()
    machine0, wall0 = psutil.cpu_times(), time.monotonic()
    subprocesses0 = children_cpu(roles["launch"][0])
    say(f"N={n}: {n} launches of {repo_url} at once ({launcher} launcher) ...")
    main = with_args(launch_clients, url=stack.url, path=path, timeout=timeout)
    with ClientPool(main, n, processes) as pool, Sampler(probes, period=0.5) as sampler:
        results = [r for share in pool.gather("result", timeout + 180) for r in share]
        client_cpu = pool.cpu_seconds()
    cpu1, cmds1, own1 = cpu_seconds(roles), redis_figures(rds)["commands"], own_cpu()
    by_command = connections_by_command(rds, roles, stack.redis.port)
    machine1, wall = psutil.cpu_times(), time.monotonic() - wall0
    subprocesses = children_cpu(roles["launch"][0]) - subprocesses0
    busy = (sum(machine1) - machine1.idle - machine1.iowait) - (sum(machine0) - machine0.idle - machine0.iowait)
    rds.close()

    launch_ids = sorted({r["launch_id"] for r in results if r["launch_id"]})
    answered, removed = 0, 0
    if launcher == "docker":
        readies = [r["ready"] for r in results if r["ready"]]
        with concurrent.futures.ThreadPoolExecutor(8) as threads:
            answered = sum(threads.map(server_answers, readies))
        for launch_id in launch_ids:
            removed += remove_containers(engine, launch_id)
        say(f"  {answered} of {len(readies)} servers answered; {removed} containers removed")
    images = sorted({r["image"] for r in results if r["image"]})
    for image in images:  # the one image built for this N (the registry's copy goes with the work dir)
        remove_image(engine, image)

    start = min(r["sent"] for r in results)
    ready = [r for r in results if r["final"] == "ready"]
    latencies = [r["phases"]["ready"] - r["sent"] for r in ready]
    readies_at = [r["phases"]["ready"] - start for r in ready]
    built_at = [r["phases"]["built"] - start for r in results if "built" in r["phases"]]
    building_at = [r["phases"]["building"] - start for r in results if "building" in r["phases"]]
    errors = sorted({r["error"] for r in results if r["error"]})
    runs = runs_of(counter, sha)
    say(f"  N={n}: {runs} repo2docker run(s), {len(ready)} ready, {n - len(ready)} not; "
        f"last ready {max(readies_at, default=float('nan')):.1f} s")
    return {
        "n": n, "launcher": launcher, "sha": sha, "repo2docker_runs": runs, "ready": len(ready),
        "failed": sum(1 for r in results if r["final"] == "failed"),
        "no_end": sum(1 for r in results if r["final"] is None), "launch_ids": len(launch_ids),
        "saw_building": sum(1 for r in results if "building" in r["phases"]),
        "first_building_s": min(building_at, default=float("nan")),
        "first_built_s": min(built_at, default=float("nan")), "last_built_s": max(built_at, default=float("nan")),
        "first_ready_s": min(readies_at, default=float("nan")), "last_ready_s": max(readies_at, default=float("nan")),
        "ready_p50_s": percentile(latencies, 50), "ready_p99_s": percentile(latencies, 99),
        "redis_clients_before": before["redis_clients"], "redis_clients_peak": sampler.peaks.get("redis_clients"),
        "redis_conns_peak_by_process": {k[6:]: v for k, v in sampler.peaks.items() if k.startswith("conns_")},
        "redis_commands": cmds1 - cmds0, "redis_conns_by_command": by_command,
        "web_rss_before_mib": before["web_rss"] / 2**20, "web_rss_peak_mib": sampler.peaks["web_rss"] / 2**20,
        "launch_rss_before_mib": before["launch_rss"] / 2**20,
        "launch_rss_peak_mib": sampler.peaks["launch_rss"] / 2**20,
        "cpu_s": {role: cpu1[role] - cpu0[role] for role in cpu1}, "client_cpu_s": client_cpu,
        "git_server_cpu_s": own1 - own0, "wall_s": wall, "launch_subprocess_cpu_s": subprocesses,
        "machine_busy_pct": 100 * busy / (wall * (psutil.cpu_count() or 1)),
        "answered": answered if launcher == "docker" else None, "containers_removed": removed,
        "log_problems": log_problems(stack), "errors": errors[:5],
        "images": images,
    }


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, action="append", help="concurrent launches (repeatable); default 200")
    p.add_argument("--launcher", choices=["bench", "docker"], default="bench")
    p.add_argument("--launch-concurrency", type=int, default=500,
                   help="greenlets of the launch worker (Bindery's default is 500)")
    p.add_argument("--client-processes", type=int, default=2)
    p.add_argument("--timeout", type=float, default=900, help="seconds a client waits for ready")
    p.add_argument("--no-warm-up", dest="warm_up", action="store_false",
                   help="skip the first single launch that pushes the base image's layers to the new registry")
    args = p.parse_args()
    ns = args.n or [200]
    if args.launcher == "docker" and max(ns) > 50:
        raise BenchError("--launcher docker starts one Jupyter container per launch: keep N <= 50 here")
    nofile = raise_nofile()
    if max(ns) * 3 + 500 > nofile:
        raise BenchError(f"RLIMIT_NOFILE is {nofile}: too low for {max(ns)} launches")
    if port_busy(REGISTRY_PORT):
        raise BenchError(f"127.0.0.1:{REGISTRY_PORT} is busy (a test run or another registry?); "
                         "set TEST_REGISTRY_PORT to a free one of 5055-5062")

    rows: list[dict[str, Any]] = []
    with Bench("dedup", keep=args.keep) as bench:
        engine = bench.engine()
        registry = bench.registry()
        git = bench.git_server()
        counter, command = bench.build_counter()
        settings: dict[str, Any] = {
            "registry_url": registry.url, "image_prefix": f"127.0.0.1:{REGISTRY_PORT}/bindery-bench-",
            "docker_host": bench.docker_host, "repo2docker_command": command, "launcher": args.launcher,
            "launch_concurrency": args.launch_concurrency, "keepalive_interval": 5,
        }
        if args.launcher == "docker":
            settings.update({"launch_ports": "19800-19999", "launch_timeout": 300})
        stack = bench.stack(args.launcher, settings)
        if args.launcher == "docker":  # whatever a failed run leaves: this stack's containers, each by id
            bench.callback(remove_instance_containers, engine, stack.settings["instance_name"])
        if args.warm_up:  # the base image's layers reach the fresh registry once, before the figures
            warm = run_n(stack, registry, git, counter, engine, 1, args.launcher, 1, args.timeout)
            warm_up = {k: warm[k] for k in ("repo2docker_runs", "ready", "first_built_s", "last_ready_s")}
        for n in ns:
            row = run_n(stack, registry, git, counter, engine, n, args.launcher,
                        args.client_processes, args.timeout)
            rows.append(row)

    result: dict[str, Any] = {"launcher": args.launcher, "launch_concurrency": args.launch_concurrency,
                              "rows": rows, "notes": [f"N={r['n']} errors: {r['errors']}" for r in rows if r["errors"]]}
    result["notes"] += [f"N={r['n']} Redis connections after the run by process:last command: "
                        f"{r['redis_conns_by_command']}" for r in rows]
    if args.warm_up:
        result["warm_up"] = warm_up
        result["notes"].append(f"warm-up (one launch, pushes the base layers to the new registry): {warm_up}")
    table = [{"N": r["n"], "repo2docker runs": r["repo2docker_runs"], "ready": r["ready"], "failed": r["failed"],
              "no end": r["no_end"], "saw building": r["saw_building"], "build starts s": r["first_building_s"],
              "first built s": r["first_built_s"],
              "first ready s": r["first_ready_s"], "last ready s": r["last_ready_s"],
              "ready p50 s": r["ready_p50_s"], "ready p99 s": r["ready_p99_s"],
              **({"servers answered": r["answered"]} if args.launcher == "docker" else {})} for r in rows]
    resources = [{"N": r["n"], "redis conns before": r["redis_clients_before"],
                  "redis conns peak": r["redis_clients_peak"],
                  **{f"peak {k}": v for k, v in r["redis_conns_peak_by_process"].items()},
                  "redis cmds": r["redis_commands"],
                  "web RSS MiB": f"{r['web_rss_before_mib']:.0f} -> {r['web_rss_peak_mib']:.0f}",
                  "launch RSS MiB": f"{r['launch_rss_before_mib']:.0f} -> {r['launch_rss_peak_mib']:.0f}"}
                 for r in rows]
    cpu = [{"N": r["n"], "wall s": r["wall_s"], **{f"{k} s": v for k, v in r["cpu_s"].items()},
            "of which launch's git s": r["launch_subprocess_cpu_s"],
            "clients s": r["client_cpu_s"], "bench process (git server) s": r["git_server_cpu_s"],
            f"machine busy % ({psutil.cpu_count()} cores, all users)": r["machine_busy_pct"]} for r in rows]
    logs = [{"N": r["n"], **r["log_problems"]} for r in rows]
    emit(args, result, [
        (f"{', '.join(str(n) for n in ns)} concurrent launches of one unbuilt repository "
         f"({args.launcher} launcher; times from the first request)", table),
        ("Redis connections, memory (peaks sampled every 0.5 s)", resources),
        ("CPU seconds by process during the run", cpu),
        ("tracebacks / ERROR lines / 5xx in the stack's logs (cumulative)", logs)])
    ok = all(r["repo2docker_runs"] == 1 and r["ready"] == r["n"] and
             (r["answered"] is None or r["answered"] == r["n"]) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    main_wrapper(main)
