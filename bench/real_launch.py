"""Cached launches of a real image: request → ``ready`` → the Jupyter server answers.

The docker launcher (the default) on the Podman engine, the reference registry
on 127.0.0.1:5055.  A repository FROM localhost/bindery-jupyter:bookworm is
built and pushed once through Bindery (``?build_only=true``); then launches
ask for it by sha one after another.  Per launch: seconds from sending the
request to the ``ready`` event, and to the first 200 from
``GET <url>api?token=<token>``.  Every container launched is removed by id
(found by its ``org.bindery.launch=<launch id>`` label) right after it is measured.

    .venv/bin/python bench/real_launch.py [--launches 10] [--json]
    .venv/bin/python bench/real_launch.py --pool [--launches 10] [--json]

With ``--pool`` the stack keeps a warm pool of one server for the commit (``warm_pool``,
beat every second): each round waits until the pool is full and launches (a pool hit),
then launches again at once (the refill has only begun: a miss, which starts a server as
without a pool).  Each launch is classed by its events (the pool's ``launching`` line),
not by this schedule; pooled servers are removed by their port and the stack's instance.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import requests
from _harness import (
    REGISTRY_PORT,
    Bench,
    BenchError,
    SSEConnection,
    build_once,
    build_path,
    emit,
    host_port,
    main_wrapper,
    parser,
    percentile,
    port_busy,
    quick_dockerfile,
    remove_containers,
    remove_image,
    require_loopback,
    say,
)


async def follow(url: str, path: str, timeout: float, seen: list[str],
                 keep_events: bool = False) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """Returns (t0, arrival of each phase, the ready event); records the launch id in ``seen`` at once."""
    host, port = host_port(url)
    t0 = time.perf_counter()
    arrivals: dict[str, float] = {}
    conn = await SSEConnection.open(host, port, path, timeout=30)
    try:
        async with asyncio.timeout(timeout):
            async for kind, data, event_id in conn.items():
                if kind != "event":
                    continue
                if event_id and "_" in event_id and event_id.split("_")[0] not in seen:
                    seen.append(event_id.split("_")[0])
                arrivals.setdefault(data.get("phase"), time.perf_counter() - t0)
                if keep_events:
                    arrivals.setdefault("_events", []).append(data)
                if data.get("phase") == "failed":
                    raise BenchError(f"launch failed: {data}")
                if data.get("phase") == "ready":
                    return t0, arrivals, data
    finally:
        conn.close()
    raise BenchError(f"stream ended before ready: {arrivals}")


def first_200(server_url: str, token: str, t0: float, timeout: float = 60) -> float:
    require_loopback(server_url)
    session = requests.Session()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if session.get(f"{server_url}api", params={"token": token}, timeout=2).status_code == 200:
                return time.perf_counter() - t0
        except requests.RequestException:
            pass
        time.sleep(0.02)
    raise BenchError(f"{server_url} did not answer 200 within {timeout} s")


def pool_full(url: str, timeout: float = 60) -> None:
    """Wait until /health's Warm pool check shows a server (health_cache_seconds is 0 here)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        checks = requests.get(f"{url}/health", timeout=10).json()["checks"]
        pool = next((c for c in checks if c["service"] == "Warm pool"), {})
        if pool.get("pooled", 0) >= 1:
            return
        time.sleep(0.1)
    raise BenchError("the warm pool did not fill")


def remove_by_port(engine: Any, instance: str, url: str) -> int:
    port = url.rstrip("/").rsplit(":", 1)[1]
    found = engine.containers.list(ignore_removed=True, all=True, filters={"label": [f"org.bindery.instance={instance}",
                                                                f"org.bindery.port={port}"]})
    for container in found:
        container.remove(force=True)
    return len(found)


def pool_main(args: Any) -> int:
    """Hits and misses of the warm pool, same stack, same run."""
    rows: list[dict[str, Any]] = []
    removed = 0
    with Bench("real-pool", keep=args.keep) as bench:
        engine = bench.engine()
        registry = bench.registry()
        git = bench.git_server()
        repo_url, sha = git.make_repo(quick_dockerfile())
        spec = build_path(repo_url, sha).removeprefix("/build/")
        made: dict[str, str] = {}

        def remove_all() -> None:
            """After the stack stopped (its beat refills the pool up to then): its servers, then the image."""
            nonlocal removed
            for container in engine.containers.list(ignore_removed=True, all=True, filters={"label": [
                    f"org.bindery.instance={made['instance']}"]}):
                container.remove(force=True)
                removed += 1
            if "image" in made:
                remove_image(engine, made["image"])

        bench.callback(remove_all)  # (registered first: runs last)
        stack = bench.stack("docker", {
            "registry_url": registry.url, "image_prefix": f"127.0.0.1:{REGISTRY_PORT}/bindery-bench-",
            "docker_host": bench.docker_host, "launch_ports": "19500-19599", "launch_timeout": 120,
            "warm_pool": {spec: 1}, "warm_pool_interval": 1, "health_cache_seconds": 0,
        }, beat=True)
        made["instance"] = instance = stack.settings["instance_name"]
        made["image"] = build_once(stack, repo_url, sha)
        path = build_path(repo_url, sha)
        for i in range(args.launches * 2 + 1):  # the first launch names the pool's image: a miss
            if i % 2 == 1:
                pool_full(stack.url)
            seen: list[str] = []
            t0, arrivals, ready = asyncio.run(follow(stack.url, path, 180, seen, keep_events=True))
            answered = first_200(ready["url"], ready["token"], t0)
            hit = any(e.get("pool") == "hit" for e in arrivals.get("_events", []))
            rows.append({"pool": "hit" if hit else "miss", "ready_s": arrivals["ready"], "answer_s": answered})
            say(f"launch {i + 1} ({rows[-1]['pool']}): ready {arrivals['ready']:.3f} s, "
                f"answers {answered:.3f} s")
            removed += remove_by_port(engine, instance, ready["url"])

    table = []
    for kind in ("hit", "miss"):
        for key, name in (("ready_s", "request -> ready"), ("answer_s", "request -> first 200 from <url>api")):
            values = [r[key] for r in rows if r["pool"] == kind]
            table.append({"pool": kind, "measure": name, "n": len(values), "p50": percentile(values, 50),
                          "p99": percentile(values, 99), "min": min(values, default=float("nan")),
                          "max": max(values, default=float("nan"))})
    emit(args, {"launches": rows, "table": table, "removed_containers": removed},
         [("warm pool: cached launches of a real image, pool hit vs miss (seconds)", table)])
    return 0


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--launches", type=int, default=10)
    p.add_argument("--pool", action="store_true", help="measure warm pool hits vs misses")
    args = p.parse_args()
    if args.pool:
        return pool_main(args)
    if port_busy(REGISTRY_PORT):
        raise BenchError(f"127.0.0.1:{REGISTRY_PORT} is busy (a test run or another registry?); "
                         "stop it first — this benchmark starts its own registry there")

    launches: list[dict[str, Any]] = []
    launch_ids: list[str] = []
    removed = 0
    with Bench("real", keep=args.keep) as bench:
        engine = bench.engine()
        registry = bench.registry()
        git = bench.git_server()
        repo_url, sha = git.make_repo(quick_dockerfile())
        stack = bench.stack("docker", {
            "registry_url": registry.url, "image_prefix": f"127.0.0.1:{REGISTRY_PORT}/bindery-bench-",
            "docker_host": bench.docker_host, "launch_ports": "19500-19599", "launch_timeout": 120,
        })
        image = build_once(stack, repo_url, sha)
        bench.callback(remove_image, engine, image)
        path = build_path(repo_url, sha)
        try:
            for i in range(args.launches):
                seen: list[str] = []
                try:
                    t0, arrivals, ready = asyncio.run(follow(stack.url, path, 180, seen))
                    answered = first_200(ready["url"], ready["token"], t0)
                    launches.append({"ready_s": arrivals["ready"], "answer_s": answered,
                                     "built_s": arrivals.get("built"), "launching_s": arrivals.get("launching"),
                                     "launch_id": seen[0] if seen else None})
                    say(f"launch {i + 1}: ready {arrivals['ready']:.2f} s, answers {answered:.2f} s")
                finally:
                    launch_ids += seen
                    for launch_id in seen:
                        removed += remove_containers(engine, launch_id)
        finally:
            for launch_id in launch_ids:  # anything a failed launch may have left
                removed += remove_containers(engine, launch_id)

    def stats(key: str) -> dict[str, float]:
        values = [r[key] for r in launches if r.get(key) is not None]
        return {"p50": percentile(values, 50), "mean": statistics.fmean(values) if values else float("nan"),
                "min": min(values, default=float("nan")), "max": max(values, default=float("nan"))}

    result = {"launches": launches, "removed_containers": removed,
              "ready_s": stats("ready_s"), "answer_s": stats("answer_s"),
              "built_s": stats("built_s"), "launching_s": stats("launching_s"), "notes": []}
    table = [{"measure": name, "n": len(launches), **{k: v for k, v in result[key].items()}}
             for name, key in (("request -> built (image found)", "built_s"),
                               ("request -> launching", "launching_s"),
                               ("request -> ready", "ready_s"),
                               ("request -> first 200 from <url>api", "answer_s"))]
    emit(args, result, [(f"cached launch of a real image ({len(launches)} sequential launches, seconds)", table),
                        ("per launch (s)", [{"#": i + 1, "ready": r["ready_s"], "200": r["answer_s"]}
                                            for i, r in enumerate(launches)])])
    if not args.json:
        print(f"containers removed: {removed}")
    return 0 if len(launches) == args.launches else 1


if __name__ == "__main__":
    main_wrapper(main)
