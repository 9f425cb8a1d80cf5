"""A class clicks at once: N cached launches of one repository together, real containers.

The docker launcher on the Podman engine, the reference registry on 127.0.0.1.  A
repository FROM localhost/bindery-jupyter:bookworm is built and pushed once through
Bindery (``?build_only=true``); then, for each mode, a stack of its own launches it once
alone (the yardstick, same run) and then N times at once, by sha.  Per launch: seconds
from sending its request to its ``ready`` event; every launch must then answer its own
token (``GET <url>api?token=...`` → 200).  Modes:

- ``auto``: admission on (``launch_start_concurrency: auto``, one start per core);
- ``off``: admission off (``launch_start_concurrency`` 100000: every server starts at once);
- ``pool``: admission on and a warm pool of N servers for the commit, full before the burst;
- ``c<K>``: admission with K starts at a time (``--concurrency K``), to pick ``auto``.

Figures per mode: the lone launch, the burst's first / median / last ``ready``, first ÷
lone and median ÷ last.  Every container a stack started is removed by id (found by its
``org.bindery.instance`` label) when that stack stops; the image built is removed at the end.

    .venv/bin/python bench/burst.py [--n 30] [--mode auto --mode off --mode pool] [--concurrency 4]
"""

from __future__ import annotations

import asyncio
import os
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
    port_busy,
    quick_dockerfile,
    raise_nofile,
    remove_image,
    remove_instance_containers,
    require_loopback,
    say,
)

OFF = 100_000  # launch_start_concurrency that never makes anyone wait


async def one_launch(url: str, path: str, timeout: float) -> dict[str, Any]:
    """Request → ``ready``: seconds, the ready event, and the most starts it was told came before it."""
    host, port = host_port(url)
    t0 = time.perf_counter()
    conn = await SSEConnection.open(host, port, path, timeout=60)
    ahead = 0
    pool = False
    seen: list[tuple[float, str, str]] = []
    try:
        async with asyncio.timeout(timeout):
            async for kind, data, _ in conn.items():
                if kind != "event":
                    continue
                ahead = max(ahead, int(data.get("ahead") or 0))
                seen.append((time.perf_counter() - t0, str(data.get("phase")), str(data.get("message", ""))[:70]))
                pool = pool or data.get("pool") == "hit"
                if data.get("phase") == "failed":
                    raise BenchError(f"launch failed: {data}")
                if data.get("phase") == "ready":
                    return {"ready_s": time.perf_counter() - t0, "url": data["url"], "token": data["token"],
                            "ahead": ahead, "pool": pool, "events": seen}
    finally:
        conn.close()
    raise BenchError("stream ended before ready")


async def burst(url: str, path: str, n: int, timeout: float) -> list[dict[str, Any]]:
    results = await asyncio.gather(*(one_launch(url, path, timeout) for _ in range(n)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise BenchError(f"{len(failed)} of {n} launches did not end ready: {failed[0]!r}")
    return [r for r in results if isinstance(r, dict)]


def answers(server_url: str, token: str, timeout: float = 60) -> bool:
    """The server answers its own token (200 from its API)."""
    require_loopback(server_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{server_url}api", params={"token": token}, timeout=5).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False


def pool_full(url: str, n: int, timeout: float) -> float:
    """Wait until /health's Warm pool check shows ``n`` servers; seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        checks = requests.get(f"{url}/health", timeout=30).json()["checks"]
        pool = next((c for c in checks if c["service"] == "Warm pool"), {})
        if pool.get("pooled", 0) >= n:
            return time.monotonic() - t0
        time.sleep(0.5)
    raise BenchError(f"the warm pool did not reach {n} servers within {timeout} s")


def remove_by_port(engine: Any, instance: str, url: str) -> int:
    """Remove the container of this stack serving ``url`` (each by its own id)."""
    port = url.rstrip("/").rsplit(":", 1)[1]
    found = engine.containers.list(ignore_removed=True, all=True, filters={"label": [
        f"org.bindery.instance={instance}", f"org.bindery.port={port}"]})
    for container in found:
        container.remove(force=True)
    return len(found)


def load1() -> float:
    return os.getloadavg()[0]


def run_mode(bench: Bench, engine: Any, mode: str, n: int, settings: dict[str, Any], repo_url: str, sha: str,
             made: dict[str, str], index: int) -> dict[str, Any]:
    concurrency: Any = {"auto": "auto", "off": OFF, "pool": "auto"}.get(mode) or int(mode[1:])
    spec = build_path(repo_url, sha).removeprefix("/build/")
    extra: dict[str, Any] = {"launch_start_concurrency": concurrency}
    if mode == "pool":
        extra.update({"warm_pool": {spec: n}, "warm_pool_max_servers": n, "warm_pool_interval": 1,
                      "health_cache_seconds": 0})
    stack = bench.stack(f"{index}-{mode}", {**settings, **extra}, beat=mode == "pool")  # (a mode may come twice)
    instance = stack.settings["instance_name"]
    try:
        if "image" not in made:
            made["image"] = build_once(stack, repo_url, sha)
        path = build_path(repo_url, sha)
        warm = asyncio.run(one_launch(stack.url, path, 180))  # the stack's first launch loads the backend
        remove_by_port(engine, instance, warm["url"])
        lone = asyncio.run(one_launch(stack.url, path, 180))
        say(f"[{mode}] one launch alone: ready {lone['ready_s']:.2f} s (the first: {warm['ready_s']:.2f} s)")
        for at, phase, message in lone["events"]:
            say(f"    {at:7.3f} {phase:10} {message.strip()}")
        if not answers(lone["url"], lone["token"]):
            raise BenchError(f"[{mode}] the lone launch's server does not answer its token")
        remove_by_port(engine, instance, lone["url"])  # (a pool may be filling meanwhile: only this one)
        filled = pool_full(stack.url, n, 600) if mode == "pool" else None
        if filled is not None:
            say(f"[{mode}] pool of {n} full after {filled:.1f} s")
        load_before = load1()
        t0 = time.perf_counter()
        results = asyncio.run(burst(stack.url, path, n, 600))
        wall = time.perf_counter() - t0
        answered = sum(answers(r["url"], r["token"]) for r in results)
        times = sorted(r["ready_s"] for r in results)
        row = {"mode": mode, "start_concurrency": concurrency if concurrency != OFF else "off",
               "n": n, "lone_s": lone["ready_s"], "first_s": times[0], "median_s": statistics.median(times),
               "last_s": times[-1], "first/lone": times[0] / lone["ready_s"],
               "median/last": statistics.median(times) / times[-1], "ready": len(results), "answered": answered,
               "pool_hits": sum(r["pool"] for r in results), "max_told_ahead": max(r["ahead"] for r in results),
               "wall_s": wall, "load1_before": load_before, "load1_after": load1()}
        say(f"[{mode}] {n} at once: first {row['first_s']:.2f} s, median {row['median_s']:.2f} s, "
            f"last {row['last_s']:.2f} s; {answered}/{n} answer their token")
        return row
    finally:
        stack.stop()
        remove_instance_containers(engine, instance)


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=30, help="launches at once (default 30)")
    p.add_argument("--mode", action="append", choices=("auto", "off", "pool"),
                   help="modes to run, in this order, each may come again (default: auto, off, pool)")
    p.add_argument("--concurrency", type=int, action="append", default=[],
                   help="also run admission with this many starts at a time (repeatable)")
    args = p.parse_args()
    if port_busy(REGISTRY_PORT):
        raise BenchError(f"127.0.0.1:{REGISTRY_PORT} is busy (a test run or another registry?); "
                         "set TEST_REGISTRY_PORT to a free one of 5055-5062")
    raise_nofile()
    modes = (args.mode or ["auto", "off", "pool"]) + [f"c{k}" for k in args.concurrency]
    rows: list[dict[str, Any]] = []
    with Bench("burst", keep=args.keep) as bench:
        engine = bench.engine()
        registry = bench.registry()
        git = bench.git_server()
        repo_url, sha = git.make_repo(quick_dockerfile())
        made: dict[str, str] = {}
        bench.callback(lambda: "image" in made and remove_image(engine, made["image"]))
        settings = {"registry_url": registry.url, "image_prefix": f"127.0.0.1:{REGISTRY_PORT}/bindery-bench-",
                    "docker_host": bench.docker_host, "launch_ports": "19300-19499", "launch_timeout": 300,
                    "quota_per_repo": 0}
        for index, mode in enumerate(modes):
            rows.append(run_mode(bench, engine, mode, args.n, settings, repo_url, sha, made, index))
    ok = all(r["ready"] == args.n and r["answered"] == args.n for r in rows)
    notes = [f"{os.cpu_count()} cores; load1 before / after each burst: "
             + ", ".join(f"{r['mode']} {r['load1_before']:.1f} / {r['load1_after']:.1f}" for r in rows)]
    emit(args, {"rows": rows, "notes": notes},
         [(f"{args.n} cached launches at once vs one alone, same run (seconds to ready)", rows)])
    return 0 if ok else 1


if __name__ == "__main__":
    main_wrapper(main)
