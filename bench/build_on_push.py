"""Build on push: seconds from a signed push to the image pushed, and the next click's request -> ready,
against a click with no hook on a commit of the same kind, same stack, same run.

Each round makes two fresh Dockerfile repositories FROM the local Jupyter image, each with a
step no other build has cached (bench/_harness.py quick_dockerfile), on a loopback git server.
The first gets a push webhook as GitHub sends it (GitHub Enterprise's shape: its host is not
github.com, so it builds with the git provider), then a click on its link; the second is only
clicked, so that click builds and starts a server.  With ``--pool`` the pushed links have a warm
pool of one, which follows the new image as soon as it is built: the click after the push is
then a pool hit.  Everything runs on 127.0.0.1: the reference registry, Redis, the web and the
workers, the engine.  What the benchmark built or started is removed by name and id at the end.

    .venv/bin/python bench/build_on_push.py [--rounds 3] [--pool] [--json]
"""

from __future__ import annotations

import time
import urllib.parse
import uuid
from typing import Any

import requests
from _harness import (
    REGISTRY_PORT,
    Bench,
    BenchError,
    emit,
    main_wrapper,
    parser,
    percentile,
    port_busy,
    quick_dockerfile,
    remove_image,
    remove_instance_containers,
    say,
)

from tests.hook_payloads import encode, github_headers, github_push
from tests.stack import Stack, collect

SECRET = "bench-webhook-secret-" + uuid.uuid4().hex


def link(clone_url: str) -> str:
    return f"git/{urllib.parse.quote(clone_url, safe='')}/main"


def push(stack: Stack, clone_url: str, sha: str) -> tuple[float, str]:
    """(seconds from the push to the image pushed, the image): the webhook, then its launch's events."""
    body = encode(github_push(html_url=clone_url.removesuffix(".git"), clone_url=clone_url,
                              full_name="bench/repo", after=sha))
    started = time.monotonic()
    answer = requests.post(f"{stack.url}/hooks/github", data=body, headers=github_headers(body, SECRET), timeout=30)
    if answer.status_code != 202:
        raise BenchError(f"the push was answered {answer.status_code}: {answer.text}")
    events = [data for _, data in collect(answer.json()["events_url"], timeout=600)]
    if events[-1].get("phase") != "ready":
        raise BenchError(f"the push's build did not end ready: {events[-3:]}\n{stack.log('build')}")
    return time.monotonic() - started, str(events[-1]["imageName"])


def click(stack: Stack, clone_url: str) -> tuple[float, list[dict[str, Any]]]:
    started = time.monotonic()
    events = [data for _, data in collect(f"{stack.url}/build/{link(clone_url)}", timeout=600)]
    if events[-1].get("phase") != "ready":
        raise BenchError(f"the click did not end ready: {events[-3:]}")
    return time.monotonic() - started, events


def wait_pooled(stack: Stack, image: str, timeout: float = 120) -> float:
    """Seconds until a warm server of ``image`` is idle in the pool."""
    started = time.monotonic()
    while True:
        checks = requests.get(f"{stack.url}/health", timeout=30).json()["checks"]
        images = next(check for check in checks if check["service"] == "Warm pool")["images"]
        if images.get(image, 0) >= 1:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise BenchError(f"no warm server of {image} after {timeout:.0f} s: {images}")
        time.sleep(0.2)


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pool", action="store_true", help="the pushed links have a warm pool of one")
    args = p.parse_args()
    if port_busy(REGISTRY_PORT):
        raise BenchError(f"127.0.0.1:{REGISTRY_PORT} is busy (a test run or another registry?); "
                         "set TEST_REGISTRY_PORT to a free one of 5055-5062")
    rows: list[dict[str, Any]] = []
    with Bench("build-on-push", keep=args.keep) as bench:
        engine = bench.engine()
        registry = bench.registry()
        git = bench.git_server()
        repos = [(git.make_repo(quick_dockerfile()), git.make_repo(quick_dockerfile())) for _ in range(args.rounds)]
        images: list[str] = []
        made: dict[str, str] = {}

        def remove_all() -> None:
            """After the stack stopped: the servers it started (its instance's), then the images it built."""
            if "instance" in made:
                remove_instance_containers(engine, made["instance"])
            for image in images:
                remove_image(engine, image)

        bench.callback(remove_all)  # (registered first: runs last)
        stack = bench.stack("push", {
            "registry_url": registry.url, "image_prefix": f"127.0.0.1:{REGISTRY_PORT}/bindery-bench-push-",
            "docker_host": bench.docker_host, "launch_ports": "19500-19599", "launch_timeout": 120,
            "webhook_secret": SECRET, "default_url": "/", "health_cache_seconds": 0,
            **({"warm_pool": {link(hooked[0]): 1 for hooked, _ in repos}} if args.pool else {}),
        })
        made["instance"] = stack.settings["instance_name"]
        for n, ((hooked_url, hooked_sha), (cold_url, _)) in enumerate(repos, 1):
            to_image, image = push(stack, hooked_url, hooked_sha)
            images.append(image)
            warm = wait_pooled(stack, image) if args.pool else None
            after_push, events = click(stack, hooked_url)
            if "building" in {event["phase"] for event in events}:
                raise BenchError("the click after the push built again")
            hit = any(event.get("pool") == "hit" for event in events)
            no_hook, cold = click(stack, cold_url)
            images.append(str(cold[-1]["image"]))
            rows.append({"round": n, "push_to_image_s": to_image, "pool_warm_s": warm,
                         "click_after_push_s": after_push, "pool": "hit" if hit else "-", "click_no_hook_s": no_hook})
            say(f"round {n}: push -> image {to_image:.2f} s; click after push {after_push:.2f} s"
                f"{' (pool hit)' if hit else ''}; click with no hook {no_hook:.2f} s")

    table = []
    for key, name in (("push_to_image_s", "push -> image pushed"),
                      ("click_after_push_s", "click after the push: request -> ready"),
                      ("click_no_hook_s", "click with no hook: request -> ready")):
        values = [row[key] for row in rows]
        table.append({"measure": name, "n": len(values), "p50": percentile(values, 50), "min": min(values),
                      "max": max(values)})
    emit(args, {"rounds": rows, "table": table, "pool": args.pool},
         [(f"build on push{' (warm pool of one)' if args.pool else ''} (seconds)", table)])
    return 0


if __name__ == "__main__":
    main_wrapper(main)
