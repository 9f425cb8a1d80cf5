"""K open event streams against one gunicorn gevent web process: keepalives, memory, fan-out.

One web process (gunicorn, ``web_workers: 1``, one gevent worker) with a short
``keepalive_interval`` (default 1 s).  One launch channel is made directly in the
stack's Redis (meta key plus one ``waiting`` event, as tasks/launch_record.py and app/launches.py would), so
no pipeline work happens.  K clients reconnect to it with ``Last-Event-ID`` (the
resume path, the same generator as a new launch's stream), each on its own raw
socket, spread over several client processes so the load generator is not the
bottleneck (their CPU is reported).  Once all K are open they are held for
``--hold`` seconds; halfway one event is published into the channel (XADD +
PUBLISH, exactly what EventStream.publish does when a launch step publishes).

Figures per K: connections that failed or were dropped; keepalive gaps while all K
were open (p50/p99/max, fraction <= interval + ``--late``); RSS of the web
worker before and with K streams (KiB per stream); CPU of the web worker, of
Redis and of the clients while holding; Redis connections and commands/s while
holding; the fan-out latency of the published event to all K streams (p50/p99/max;
it must arrive within the second half of the hold).  Exits 1 if any stream failed or
dropped, missed the event, or a keepalive was late.

    .venv/bin/python bench/streams.py [--k 2000 --k 4000] [--interval 1] [--hold 10] [--json]
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from typing import Any

import psutil
import redis
from _harness import (
    Bench,
    BenchError,
    ClientPool,
    SSEConnection,
    emit,
    host_port,
    main_wrapper,
    parser,
    percentile,
    raise_nofile,
    redis_figures,
    say,
    stopped,
    with_args,
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

    def summary(self) -> tuple[list[float], float | None, str | None, bool, bool]:
        return self.keepalives, self.event_at, self.error, self.ended, self.connected


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
            now = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
            if kind == "comment" and data.startswith(":keepalive"):
                client.keepalives.append(now)
            elif kind == "event" and client.event_at is None:
                client.event_at = now
    except Exception as exc:
        client.error = f"read: {type(exc).__name__}: {exc}"[:160]


async def client_main(count: int, report: Any, stop_signal: Any, *, url: str, path: str,
                      headers: dict[str, str], connect_parallel: int) -> list[Any]:
    """One client process: open ``count`` streams, say when they are open, hold until told to stop."""
    host, port = host_port(url)
    gate = asyncio.Semaphore(connect_parallel)
    stop = asyncio.Event()
    clients = [Client() for _ in range(count)]
    tasks = [asyncio.ensure_future(hold(host, port, path, headers, c, gate, stop)) for c in clients]
    while any(not c.connected and c.error is None for c in clients):
        await asyncio.sleep(0.02)
    report("open", {"connected": sum(c.connected for c in clients), "at": time.perf_counter()})
    await stopped(stop_signal)
    stop.set()
    await asyncio.gather(*tasks)
    return [c.summary() for c in clients]


def worker_process(stack: Any) -> psutil.Process:
    children = psutil.Process(stack.processes["web"].pid).children()
    if len(children) != 1:
        raise BenchError(f"expected one gunicorn worker, found {len(children)}")
    return children[0]


def cpu(process: psutil.Process) -> float:
    t = process.cpu_times()
    return t.user + t.system


def warm_up(url: str, path: str, headers: dict[str, str], interval: float) -> None:
    """A few streams so the notifier thread and code paths exist before the baseline."""
    host, port = host_port(url)

    async def run() -> None:
        stop = asyncio.Event()
        gate = asyncio.Semaphore(10)
        tasks = [asyncio.ensure_future(hold(host, port, path, headers, Client(), gate, stop)) for _ in range(10)]
        await asyncio.sleep(1)
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(run())
    time.sleep(interval + 1.5)  # their greenlets end at their next keepalive write


def run_k(url: str, rds: redis.Redis, worker: psutil.Process, redis_proc: psutil.Process, k: int,
          interval: float, hold_s: float, late: float, processes: int, connect_parallel: int) -> dict[str, Any]:
    launch_id, entry = make_channel(rds)
    path = f"/build/{PROVIDER}/{SPEC}"
    headers = {"Last-Event-ID": f"{launch_id}_{entry}"}
    warm_up(url, path, headers, interval)
    rss_before = worker.memory_info().rss

    main = with_args(client_main, url=url, path=path, headers=headers, connect_parallel=connect_parallel)
    with ClientPool(main, k, processes) as pool:
        t0 = time.perf_counter()
        opened = pool.gather("open", timeout=300)
        all_open_at = max(o["at"] for o in opened)
        open_s = all_open_at - t0
        say(f"  K={k}: {sum(o['connected'] for o in opened)} connected in {open_s:.2f} s "
            f"({len(pool.procs)} client processes)")
        time.sleep(0.5)
        w0, r0, c0, f0, h0 = cpu(worker), cpu(redis_proc), pool.cpu_seconds(), redis_figures(rds), time.perf_counter()
        time.sleep(hold_s / 2)
        published_at = time.perf_counter()
        publish(rds, launch_id, {"phase": "launching", "message": "bench event\n"})
        mid = redis_figures(rds)
        time.sleep(hold_s / 2)
        w1, r1, c1, f1, h1 = cpu(worker), cpu(redis_proc), pool.cpu_seconds(), redis_figures(rds), time.perf_counter()
        rss_with = worker.memory_info().rss
        results = [c for share in pool.results() for c in share]

    window = h1 - h0
    connected = [r for r in results if r[4]]
    limit = interval + late
    gaps: list[float] = []  # between keepalives that arrived in the holding window
    for keepalives, *_ in connected:
        gaps += [b - a for a, b in itertools.pairwise(keepalives) if a >= h0]
        silence = h1 - (keepalives[-1] if keepalives else h0)
        if silence > limit:  # still waiting when we stopped: a late keepalive too
            gaps.append(silence)
    fan = [r[1] - published_at for r in connected if r[1] is not None]
    errors = sorted({r[2] for r in results if r[2]})
    return {
        "k": k, "client_processes": len(opened), "connected": len(connected), "failed": k - len(connected),
        "dropped": sum(1 for r in connected if r[3]), "connect_s": open_s, "hold_s": window,
        "keepalive_gaps": len(gaps), "gap_p50_s": percentile(gaps, 50), "gap_p99_s": percentile(gaps, 99),
        "gap_max_s": max(gaps, default=float("nan")),
        "on_time": (sum(1 for g in gaps if g <= limit) / len(gaps)) if gaps else float("nan"),
        "late": sum(1 for g in gaps if g > limit),
        "rss_before_mib": rss_before / 2**20, "rss_with_mib": rss_with / 2**20,
        "kib_per_stream": (rss_with - rss_before) / 1024 / max(1, len(connected)),
        "web_cpu_pct": 100 * (w1 - w0) / window, "redis_cpu_pct": 100 * (r1 - r0) / window,
        "client_cpu_pct": 100 * (c1 - c0) / window,
        "client_cpu_pct_per_process": 100 * (c1 - c0) / window / max(1, len(opened)),
        "redis_clients": mid["connected_clients"], "redis_cmds_per_s": (f1["commands"] - f0["commands"]) / window,
        "fanout_received": len(fan), "fanout_p50_ms": percentile(fan, 50) * 1000,
        "fanout_p99_ms": percentile(fan, 99) * 1000, "fanout_max_ms": max(fan, default=float("nan")) * 1000,
        "errors": errors[:5],
    }


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--k", type=int, action="append", help="streams to hold (repeatable); default 2000")
    p.add_argument("--interval", type=float, default=1.0, help="keepalive_interval of the stack (s)")
    p.add_argument("--hold", type=float, default=10.0, help="seconds to hold all K streams open")
    p.add_argument("--late", type=float, default=1.0, help="a keepalive gap > interval + this is late (s)")
    p.add_argument("--client-processes", type=int, default=2, help="processes the clients are spread over")
    p.add_argument("--connect-parallel", type=int, default=128, help="connections being opened at once, per process")
    args = p.parse_args()
    ks = args.k or [2000]
    nofile = raise_nofile()
    if max(ks) + 200 > nofile:
        raise BenchError(f"RLIMIT_NOFILE is {nofile}: too low for {max(ks)} streams in one web process")

    rows = []
    with Bench("streams", keep=args.keep) as bench:
        for k in ks:
            # A fresh stack per K so each baseline is clean.
            stack = bench.stack(f"k{k}", {"web_workers": 1, "keepalive_interval": args.interval,
                                          "launcher": "bench", "docker_host": bench.docker_host})
            rds = redis.Redis.from_url(stack.redis.url)
            worker = worker_process(stack)
            assert stack.redis.process is not None
            say(f"K={k} ...")
            rows.append(run_k(stack.url, rds, worker, psutil.Process(stack.redis.process.pid), k, args.interval,
                              args.hold, args.late, args.client_processes, args.connect_parallel))
            rds.close()
            stack.stop()

    result = {"interval_s": args.interval, "late_s": args.late, "rows": rows,
              "notes": [f"K={r['k']} errors: {r['errors']}" for r in rows if r["errors"]]}
    limit = args.interval + args.late
    streams = [{"K": r["k"], "ok": r["connected"], "failed": r["failed"], "dropped": r["dropped"],
                "open s": r["connect_s"], "held s": r["hold_s"], "gaps": r["keepalive_gaps"],
                "gap p50 s": r["gap_p50_s"], "gap p99 s": r["gap_p99_s"], "gap max s": r["gap_max_s"],
                f"on time (<= {limit:g} s)": f"{100 * r['on_time']:.2f}%", "late": r["late"],
                "fan-out got": r["fanout_received"], "fan-out p50 ms": r["fanout_p50_ms"],
                "fan-out p99 ms": r["fanout_p99_ms"], "fan-out max ms": r["fanout_max_ms"]} for r in rows]
    resources = [{"K": r["k"], "RSS before MiB": r["rss_before_mib"], "RSS with MiB": r["rss_with_mib"],
                  "KiB/stream": r["kib_per_stream"], "web CPU %": r["web_cpu_pct"],
                  "redis CPU %": r["redis_cpu_pct"], "redis conns": r["redis_clients"],
                  "redis cmds/s": r["redis_cmds_per_s"], "client procs": r["client_processes"],
                  "client CPU % (each)": r["client_cpu_pct_per_process"]} for r in rows]
    emit(args, result, [
        (f"open event streams on one gunicorn gevent web process, keepalive every {args.interval:g} s", streams),
        ("resources while holding (CPU % of one core)", resources)])
    return 0 if all(r["failed"] == 0 and r["dropped"] == 0 and r["late"] == 0
                    and r["fanout_received"] == r["connected"] for r in rows) else 1


if __name__ == "__main__":
    main_wrapper(main)
