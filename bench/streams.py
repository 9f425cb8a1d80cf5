"""K open event streams against one gunicorn gevent worker: keepalives, memory, fan-out.

One launch channel is made directly in the stack's Redis (meta key plus one
``waiting`` event, as app/launches.py would), so no pipeline work happens.  K
clients reconnect to it with ``Last-Event-ID`` (the resume path), each on its
own raw asyncio socket, and stay connected for ~3 keepalive intervals.  Halfway
one event is published into the channel (XADD + PUBLISH, as app/sse.py does).

Figures per K: connections that failed or dropped, keepalive gaps (max, and the
fraction <= interval + 1 s), RSS of the gunicorn worker before and with K
streams (KiB per stream), the worker's CPU while holding, and the fan-out
latency of the published event to all K streams (p50 / max).

    .venv/bin/python bench/streams.py [--k 100 --k 1000 --k 5000] [--interval 5] [--json]
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import psutil
import redis
from _harness import (
    Bench,
    BenchError,
    SSEConnection,
    emit,
    host_port,
    main_wrapper,
    parser,
    percentile,
    raise_nofile,
    say,
)

PROVIDER, SPEC = "gh", "bindery-bench/streams/HEAD"


def make_channel(client: redis.Redis, ttl: int = 3600) -> tuple[str, str]:
    """A launch with one ``waiting`` event, as launches.start leaves it; returns (launch id, entry id)."""
    launch_id = uuid.uuid4().hex
    client.set(f"bindery:launch:{launch_id}", f"{PROVIDER}/{SPEC}", ex=ttl)
    entry = client.xadd(f"bindery:events:{launch_id}", {"data": json.dumps(
        {"phase": "waiting", "message": "Waiting for a worker to pick up the launch...\n"})})
    client.expire(f"bindery:events:{launch_id}", ttl)
    return launch_id, entry.decode() if isinstance(entry, bytes) else entry


def publish(client: redis.Redis, launch_id: str, data: dict[str, Any]) -> str:
    """What EventStream.publish does: XADD + EXPIRE + PUBLISH in one transaction."""
    pipe = client.pipeline(transaction=True)
    pipe.xadd(f"bindery:events:{launch_id}", {"data": json.dumps(data)})
    pipe.expire(f"bindery:events:{launch_id}", 3600)
    pipe.publish(f"bindery:notify:{launch_id}", "1")
    entry, _, _ = pipe.execute()
    return entry.decode() if isinstance(entry, bytes) else entry


class Client:
    def __init__(self) -> None:
        self.keepalives: list[float] = []
        self.event_at: float | None = None
        self.error: str | None = None
        self.ended = False
        self.connected = False


async def hold(host: str, port: int, path: str, headers: dict[str, str], client: Client,
               gate: asyncio.Semaphore, stop: asyncio.Event) -> None:
    try:
        async with gate:
            conn = await SSEConnection.open(host, port, path, headers, timeout=60)
        client.connected = True
    except Exception as exc:
        client.error = f"{type(exc).__name__}: {exc}"[:160]
        return
    reader = asyncio.ensure_future(_read(conn, client))
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if not stopper.done():
        client.ended = True  # the server closed the stream while we were holding it
        stopper.cancel()
    reader.cancel()
    conn.close()


async def _read(conn: SSEConnection, client: Client) -> None:
    try:
        async for kind, data, _ in conn.items():
            now = time.perf_counter()
            if kind == "comment" and data.startswith(":keepalive"):
                client.keepalives.append(now)
            elif kind == "event" and client.event_at is None:
                client.event_at = now
    except Exception as exc:
        client.error = f"read: {type(exc).__name__}: {exc}"[:160]


def worker_process(stack: Any) -> psutil.Process:
    children = psutil.Process(stack.processes["web"].pid).children()
    if len(children) != 1:
        raise BenchError(f"expected one gunicorn worker, found {len(children)}")
    return children[0]


async def run_k(url: str, rds: redis.Redis, worker: psutil.Process, k: int, interval: float,
                connect_parallel: int) -> dict[str, Any]:
    host, port = host_port(url)
    launch_id, entry = make_channel(rds)
    path = f"/build/{PROVIDER}/{SPEC}"
    headers = {"Last-Event-ID": f"{launch_id}_{entry}"}
    gate = asyncio.Semaphore(connect_parallel)

    # Warm-up: a few streams so the notifier thread and code paths exist, then the baseline.
    stop = asyncio.Event()
    warm = [Client() for _ in range(10)]
    tasks = [asyncio.ensure_future(hold(host, port, path, headers, c, gate, stop)) for c in warm]
    await asyncio.sleep(1)
    stop.set()
    await asyncio.gather(*tasks)
    await asyncio.sleep(interval + 1.5)  # their greenlets end at their next keepalive write
    rss_before = worker.memory_info().rss

    stop = asyncio.Event()
    clients = [Client() for _ in range(k)]
    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(hold(host, port, path, headers, c, gate, stop)) for c in clients]
    while True:  # until every connection is established or has failed
        pending = sum(1 for c in clients if not c.connected and c.error is None)
        if not pending:
            break
        await asyncio.sleep(0.05)
    open_s = time.perf_counter() - t0
    say(f"  K={k}: {sum(c.connected for c in clients)} connected in {open_s:.2f} s")

    hold_s = 3 * interval + 1
    cpu0, cpu_t0 = sum(worker.cpu_times()[:2]), time.perf_counter()
    await asyncio.sleep(hold_s / 2)
    published_at = time.perf_counter()
    await asyncio.to_thread(publish, rds, launch_id, {"phase": "launching", "message": "bench event\n"})
    await asyncio.sleep(hold_s / 2)
    cpu1 = sum(worker.cpu_times()[:2])
    rss_with = worker.memory_info().rss
    held_until = time.perf_counter()
    stop.set()
    await asyncio.gather(*tasks)

    all_open_at = t0 + open_s
    connected = [c for c in clients if c.connected]
    gaps: list[float] = []
    steady: list[float] = []  # gaps that began once every connection was open
    silent_tail: list[float] = []
    for c in connected:
        for a, b in zip(c.keepalives, c.keepalives[1:], strict=False):
            gaps.append(b - a)
            if a >= all_open_at:
                steady.append(b - a)
        if c.keepalives:  # the time since the last keepalive when we stopped counts as an open gap
            silent_tail.append(held_until - c.keepalives[-1])
    fan = [c.event_at - published_at for c in connected if c.event_at is not None]
    limit = interval + 1.0
    errors = sorted({c.error for c in clients if c.error})
    return {
        "k": k, "connected": len(connected), "failed": k - len(connected),
        "dropped": sum(1 for c in connected if c.ended), "connect_s": open_s,
        "keepalive_gaps": len(gaps), "max_gap_s": max([*gaps, *silent_tail], default=float("nan")),
        "on_time": (sum(1 for g in gaps if g <= limit) / len(gaps)) if gaps else float("nan"),
        "steady_gaps": len(steady), "steady_max_gap_s": max(steady, default=float("nan")),
        "steady_on_time": (sum(1 for g in steady if g <= limit) / len(steady)) if steady else float("nan"),
        "rss_before_mib": rss_before / 2**20, "rss_with_mib": rss_with / 2**20,
        "kib_per_stream": (rss_with - rss_before) / 1024 / max(1, len(connected)),
        "worker_cpu_pct_holding": 100 * (cpu1 - cpu0) / (held_until - cpu_t0),
        "fanout_received": len(fan), "fanout_p50_ms": percentile(fan, 50) * 1000,
        "fanout_max_ms": max(fan, default=float("nan")) * 1000,
        "errors": errors[:5],
    }


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--k", type=int, action="append", help="streams to hold (repeatable); default 100, 1000, 5000")
    p.add_argument("--interval", type=float, default=5.0, help="keepalive_interval of the stack")
    p.add_argument("--connect-parallel", type=int, default=256, help="connections being opened at once")
    args = p.parse_args()
    ks = args.k or [100, 1000, 5000]
    nofile = raise_nofile()
    if max(ks) + 200 > nofile:
        raise BenchError(f"RLIMIT_NOFILE is {nofile}: too low for {max(ks)} streams")

    rows = []
    with Bench("streams", keep=args.keep) as bench:
        for k in ks:
            # A fresh stack per K so each baseline is clean.
            stack = bench.stack(f"k{k}", {"web_workers": 1, "keepalive_interval": args.interval,
                                          "launcher": "bench", "docker_host": bench.docker_host})
            rds = redis.Redis.from_url(stack.redis.url)
            worker = worker_process(stack)
            say(f"K={k} ...")
            rows.append(asyncio.run(run_k(stack.url, rds, worker, k, args.interval, args.connect_parallel)))
            rds.close()
            stack.stop()

    result = {"interval_s": args.interval, "rows": rows,
              "notes": [f"K={r['k']} errors: {r['errors']}" for r in rows if r["errors"]]}
    table = [{"K": r["k"], "ok": r["connected"], "failed": r["failed"], "dropped": r["dropped"],
              "open s": r["connect_s"], "gaps": r["keepalive_gaps"], "max gap s": r["max_gap_s"],
              f"on time (<= {args.interval + 1:g} s)": f"{100 * r['on_time']:.1f}%",
              "max gap s (all open)": r["steady_max_gap_s"],
              "on time (all open)": f"{100 * r['steady_on_time']:.1f}%",
              "RSS before MiB": r["rss_before_mib"], "RSS with MiB": r["rss_with_mib"],
              "KiB/stream": r["kib_per_stream"], "worker CPU %": r["worker_cpu_pct_holding"],
              "fan-out got": r["fanout_received"], "fan-out p50 ms": r["fanout_p50_ms"],
              "fan-out max ms": r["fanout_max_ms"]} for r in rows]
    emit(args, result, [(f"open event streams on one gunicorn gevent worker, keepalive {args.interval:g} s", table)])
    return 0 if all(r["failed"] == 0 and r["dropped"] == 0 and r["fanout_received"] == r["connected"]
                    for r in rows) else 1


if __name__ == "__main__":
    main_wrapper(main)
