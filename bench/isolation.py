"""What keeping user code apart costs: host networking against isolation, same run.

Two stacks side by side on the Podman engine and one reference registry on 127.0.0.1:5055:
one with ``launch_network: host`` and ``build_network: host`` (the old default), one with the
defaults (``isolated``: servers on slirp4netns with egress rules set before they start, builds
in a Podman service inside a namespace made for each build).  Alternating between them, each
builds small repositories (``?build_only=true``: repo2docker, push) and makes cached launches of
its image: seconds from the request to ``ready`` and to the server's first 200.  Every container
launched is removed by id, and each built tag by name.

    .venv/bin/python bench/isolation.py [--builds 2] [--launches 5] [--json]
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

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
    quick_dockerfile,
    remove_containers,
    remove_image,
    say,
)
from real_launch import first_200, follow

MODES = {"host": {"launch_network": "host", "build_network": "host"}, "isolated": {}}


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--builds", type=int, default=2, help="small builds per mode")
    p.add_argument("--launches", type=int, default=5, help="cached launches per mode")
    args = p.parse_args()
    if port_busy(REGISTRY_PORT):
        raise BenchError(f"127.0.0.1:{REGISTRY_PORT} is busy; this benchmark starts its own registry there")
    builds: dict[str, list[float]] = {mode: [] for mode in MODES}
    ready: dict[str, list[float]] = {mode: [] for mode in MODES}
    answer: dict[str, list[float]] = {mode: [] for mode in MODES}
    removed = 0
    with Bench("isolation", keep=args.keep) as bench:
        engine = bench.engine()
        registry = bench.registry()
        git = bench.git_server()
        stacks = {mode: bench.stack(mode, {
            "registry_url": registry.url, "image_prefix": f"127.0.0.1:{REGISTRY_PORT}/bindery-bench-{mode}-",
            "docker_host": bench.docker_host, "launch_ports": f"{19300 + 100 * n}-{19399 + 100 * n}",
            "launch_timeout": 120, **settings}) for n, (mode, settings) in enumerate(MODES.items())}
        images: dict[str, tuple[str, str]] = {}
        for round_ in range(args.builds):
            for mode, stack in stacks.items():
                repo_url, sha = git.make_repo(quick_dockerfile())
                t0 = time.monotonic()
                image = build_once(stack, repo_url, sha)
                builds[mode].append(time.monotonic() - t0)
                bench.callback(remove_image, engine, image)
                images[mode] = (repo_url, sha)
                say(f"build {round_ + 1} {mode}: {builds[mode][-1]:.2f} s")
        for i in range(args.launches):
            for mode, stack in stacks.items():
                seen: list[str] = []
                try:
                    t0, arrivals, event = asyncio.run(follow(stack.url, build_path(*images[mode]), 180, seen))
                    ready[mode].append(arrivals["ready"])
                    answer[mode].append(first_200(event["url"], event["token"], t0))
                    say(f"launch {i + 1} {mode}: ready {ready[mode][-1]:.2f} s, answers {answer[mode][-1]:.2f} s")
                finally:
                    for launch_id in seen:
                        removed += remove_containers(engine, launch_id)

    def row(measure: str, values: dict[str, list[float]]) -> dict[str, Any]:
        found: dict[str, Any] = {"measure": measure}
        for mode in MODES:
            found[f"{mode} p50"] = percentile(values[mode], 50)
            found[f"{mode} mean"] = statistics.fmean(values[mode]) if values[mode] else float("nan")
        found["isolated - host (p50)"] = found["isolated p50"] - found["host p50"]
        return found

    table = [row("small build, request -> ready (build_only)", builds),
             row("cached launch, request -> ready", ready),
             row("cached launch, request -> first 200", answer)]
    emit(args, {"builds": builds, "ready": ready, "answer": answer, "table": table, "removed_containers": removed},
         [(f"host networking vs isolation ({args.builds} builds, {args.launches} launches per mode; seconds)",
           table)])
    return 0 if all(len(ready[mode]) == args.launches for mode in MODES) else 1


if __name__ == "__main__":
    main_wrapper(main)
