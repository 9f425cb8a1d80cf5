"""Build time of content-only commits: full repo2docker build vs a reused environment, same repository, same run.

A Dockerfile repository FROM localhost/bindery-jupyter:bookworm that copies only
requirements.txt (its environment) and holds a notebook.  The first commit is built in full
(its environment is remembered); then each round commits a changed notebook and builds that
commit twice with the docker builder, in the worker as Bindery runs it: with content reuse
(the thin image) and with ``content_reuse`` off (repo2docker, under another image name).  The
engine's layer cache serves the full builds' unchanged Dockerfile steps, so the full build
figure is the cheapest a full build gets (no package is installed again); a real environment
only widens the gap.  Every image built is removed by name at the end.

    .venv/bin/python bench/content_reuse.py [--rounds 5] [--json]
"""

from __future__ import annotations

import subprocess
import time
import uuid
from typing import Any

from _harness import Bench, emit, main_wrapper, parser, percentile, say

from app import create_app
from app.redis_server import EmbeddedRedis
from providers import get_provider
from providers.base import image_name
from tests.conftest import JUPYTER_IMAGE, LOOPBACK_NETWORKS

GIT = ["git", "-c", "user.name=Bench", "-c", "user.email=bench@bindery.invalid"]


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    rows: list[dict[str, Any]] = []
    images: list[str] = []
    with Bench("content-reuse", keep=args.keep) as bench:
        engine = bench.engine()
        git = bench.git_server()
        redis = EmbeddedRedis(bench.directory / "redis").start()
        bench.callback(redis.stop)
        name = f"reuse-{uuid.uuid4().hex[:8]}"
        work, bare = git.root / f"{name}-work", git.root / f"{name}.git"
        subprocess.run([*GIT, "init", "-q", "-b", "main", str(work)], check=True)
        (work / "Dockerfile").write_text(f"FROM {JUPYTER_IMAGE}\nCOPY requirements.txt /tmp/requirements.txt\n"
                                         f"RUN echo {uuid.uuid4().hex} > /tmp/build-id\n")
        (work / "requirements.txt").write_text("# nothing\n")
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
        repo_url = f"{git.url}/{name}.git"

        def commit(text: str) -> str:
            (work / "analysis.ipynb").write_text(text)
            subprocess.run([*GIT, "-C", str(work), "add", "-A"], check=True)
            subprocess.run([*GIT, "-C", str(work), "commit", "-qm", text], check=True)
            subprocess.run([*GIT, "-C", str(work), "push", "-q", str(bare), "main"], check=True)
            subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
            return subprocess.run(["git", "-C", str(bare), "rev-parse", "main"], capture_output=True, text=True,
                                  check=True).stdout.strip()

        app = create_app({"redis_url": redis.url, "docker_host": bench.docker_host,
                          "allowed_private_networks": LOOPBACK_NETWORKS.split(",")})
        config = app.config["BINDERY"]
        from tasks.backends.docker_builder import DockerBuilder

        repo = get_provider("git", f"{repo_url.replace(':', '%3A').replace('/', '%2F')}/main", config)

        def build(sha: str, reuse: bool, suffix: str = "") -> tuple[float, str]:
            image = image_name("localhost/bindery-bench-reuse" + suffix + "-", repo.build_slug(), sha)
            images.append(image)
            launch = {"provider": "git", "spec": "x", "repo_url": repo_url, "resolved_ref": sha, "image": image}
            log: list[str] = []
            t0 = time.perf_counter()
            with app.app_context():
                DockerBuilder({**config, "content_reuse": reuse}).build(
                    repo, launch, lambda event: log.append(event["message"]))
            return time.perf_counter() - t0, "".join(log)

        try:
            first_s, _ = build(commit("first"), reuse=True)
            say(f"first commit, full build: {first_s:.2f} s")
            for i in range(args.rounds):
                sha = commit(f"round {i}")
                reused_s, log = build(sha, reuse=True)
                if "reused" not in log:
                    raise SystemExit(f"round {i}: not reused:\n{log}")
                full_s, _ = build(sha, reuse=False, suffix="-full")
                rows.append({"round": i + 1, "reused_s": reused_s, "full_s": full_s})
                say(f"round {i + 1}: reused {reused_s:.2f} s, full {full_s:.2f} s")
        finally:
            for image in images:
                try:
                    engine.images.remove(image, noprune=False)
                except Exception:
                    pass

    table = [{"build": kind, "n": len(rows), "p50": percentile([r[key] for r in rows], 50),
              "min": min(r[key] for r in rows), "max": max(r[key] for r in rows)}
             for kind, key in (("reused environment (thin image)", "reused_s"),
                               ("full repo2docker build", "full_s"))]
    emit(args, {"rounds": rows, "first_full_s": first_s, "table": table},
         [("content-only commit, build time (seconds)", table)])
    return 0


if __name__ == "__main__":
    main_wrapper(main)
