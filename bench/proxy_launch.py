"""What the proxy costs: cached launches and kernel round-trips through CHP and direct, same run.

Two stacks on the Podman engine share one reference registry and one image (FROM
localhost/bindery-jupyterlab:bookworm, built once): ``direct`` as before (servers on their own
port), ``proxied`` behind a configurable-http-proxy this script starts on 127.0.0.1 (servers
under ``/user/<id>/``, the request and every server call through CHP).  Launches alternate
between the two.  Per launch: request -> ``ready``, and -> the first 200 from ``<url>api``.
On one server of each: a kernel's execute round-trip over its websocket (``execute_request`` ->
``execute_reply``, the code ``1``), and an HTTP ``GET <url>api`` round-trip.  Every container
is removed by its launch label; CHP is stopped by its pid.

    .venv/bin/python bench/proxy_launch.py [--launches 10] [--rounds 100] [--json]
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time
import uuid
from typing import Any

import requests
import websocket
from _harness import (
    REGISTRY_PORT,
    Bench,
    BenchError,
    build_once,
    build_path,
    emit,
    main_wrapper,
    parser,
    percentile,
    port_busy,
    remove_containers,
    remove_image,
    say,
)
from real_launch import first_200, follow

from tests.chp import Chp

#: Has ipykernel (the bare Jupyter Server image has no kernel to run code in).
LAB_IMAGE = "localhost/bindery-jupyterlab:bookworm"


def kernel_round_trips(url: str, token: str, rounds: int) -> list[float]:
    """Seconds per execute_request -> execute_reply on a kernel's websocket at ``url``."""
    headers = {"Authorization": f"token {token}"}
    started = requests.post(f"{url}api/kernels", json={"name": "python3"}, headers=headers, timeout=30)
    if started.status_code != 201:
        raise BenchError(f"no kernel at {url}: {started.status_code} {started.text[:200]}")
    kernel = started.json()
    ws = websocket.create_connection(f"ws{url.removeprefix('http')}api/kernels/{kernel['id']}/channels",
                                     header=headers, timeout=60,
                                     sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),))  # (no Nagle wait)
    session = uuid.uuid4().hex
    times: list[float] = []
    try:
        for i in range(rounds + 1):  # the first one warms the kernel up: not counted
            msg_id = uuid.uuid4().hex
            started = time.perf_counter()
            ws.send(json.dumps({
                "header": {"msg_id": msg_id, "username": "", "session": session, "msg_type": "execute_request",
                           "version": "5.3"}, "parent_header": {}, "metadata": {}, "channel": "shell",
                "content": {"code": "1", "silent": True, "store_history": False, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True}}))
            while True:
                msg = json.loads(ws.recv())
                if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_reply":
                    break
            if i:
                times.append(time.perf_counter() - started)
    finally:
        ws.close()
        requests.delete(f"{url}api/kernels/{kernel['id']}", headers=headers, timeout=30)
    return times


def http_round_trips(url: str, token: str, rounds: int) -> list[float]:
    session = requests.Session()
    session.trust_env = False
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        if session.get(f"{url}api", params={"token": token}, timeout=10).status_code != 200:
            raise BenchError(f"{url}api did not answer 200")
        times.append(time.perf_counter() - started)
    return times


def row(kind: str, measure: str, values: list[float]) -> dict[str, Any]:
    return {"path": kind, "measure": measure, "n": len(values), "p50": percentile(values, 50),
            "p99": percentile(values, 99), "mean": statistics.fmean(values) if values else float("nan")}


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--launches", type=int, default=10, help="launches per path")
    p.add_argument("--rounds", type=int, default=100, help="kernel and HTTP round-trips per path")
    args = p.parse_args()
    if port_busy(REGISTRY_PORT):
        raise BenchError(f"127.0.0.1:{REGISTRY_PORT} is busy; this benchmark starts its own registry there")
    rows: dict[str, list[dict[str, float]]] = {"direct": [], "proxied": []}
    trips: dict[str, dict[str, list[float]]] = {}
    with Bench("proxy", keep=args.keep) as bench:
        engine = bench.engine()
        registry = bench.registry()
        git = bench.git_server()
        repo_url, sha = git.make_repo(f"FROM {LAB_IMAGE}\nRUN echo {uuid.uuid4().hex} > /home/jovyan/.build-id\n")
        common = {"registry_url": registry.url, "image_prefix": f"127.0.0.1:{REGISTRY_PORT}/bindery-bench-",
                  "docker_host": bench.docker_host, "launch_timeout": 120}
        direct = bench.stack("direct", {**common, "launch_ports": "19500-19549"})
        chp = Chp(bench.directory / "chp")
        proxied = bench.stack("proxied", {**common, "launch_ports": "19550-19599", "proxy_api_url": chp.api_url,
                                          "proxy_auth_token": chp.token, "public_url": chp.url})
        chp.default_target = proxied.url
        chp.start()
        bench.callback(chp.stop)
        image = build_once(direct, repo_url, sha)
        bench.callback(remove_image, engine, image)
        path = build_path(repo_url, sha)
        entry = {"direct": direct.url, "proxied": chp.url}  # a browser reaches the proxied one through CHP
        kept: dict[str, tuple[str, str, list[str]]] = {}
        try:
            for i in range(args.launches):
                for kind in ("direct", "proxied"):
                    seen: list[str] = []
                    t0, arrivals, ready = asyncio.run(follow(entry[kind], path, 180, seen))
                    answered = first_200(ready["url"], ready["token"], t0)
                    rows[kind].append({"ready_s": arrivals["ready"], "answer_s": answered})
                    say(f"launch {i + 1} {kind}: ready {arrivals['ready']:.3f} s, answers {answered:.3f} s "
                        f"({ready['url']})")
                    if i == args.launches - 1:
                        kept[kind] = (ready["url"], ready["token"], seen)
                    else:
                        for launch_id in seen:
                            remove_containers(engine, launch_id)
            for kind, (url, token, _) in kept.items():
                trips[kind] = {"kernel": kernel_round_trips(url, token, args.rounds),
                               "http": http_round_trips(url, token, args.rounds)}
        finally:
            for _, _, seen in kept.values():
                for launch_id in seen:
                    remove_containers(engine, launch_id)

    table = []
    for kind in ("direct", "proxied"):
        table.append(row(kind, "request -> ready", [r["ready_s"] for r in rows[kind]]))
        table.append(row(kind, "request -> first 200 from <url>api", [r["answer_s"] for r in rows[kind]]))
        if kind in trips:
            table.append(row(kind, "kernel execute round-trip (websocket)", trips[kind]["kernel"]))
            table.append(row(kind, "GET <url>api round-trip", trips[kind]["http"]))
    emit(args, {"launches": rows, "round_trips": trips, "table": table},
         [(f"cached launches, direct vs through CHP ({args.launches} each, alternating; seconds)", table)])
    return 0


if __name__ == "__main__":
    main_wrapper(main)
