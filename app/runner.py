"""``make run``: the whole service on one machine, stopped together by Ctrl-C.

Starts the embedded Redis (unless REDIS_URL is set), the build worker (prefork),
the launch worker (gevent), beat, gunicorn (gevent) and Flower, and stops them
all when any of them exits or on SIGINT/SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.config import load_config
from app.errors import ConfigError
from app.redis_server import EmbeddedRedis


def commands(config: dict, python: str = sys.executable) -> dict[str, list[str]]:
    """The processes of one Bindery, by role."""
    celery = [python, "-m", "celery", "-A", "worker"]
    return {
        "build-worker": [*celery, "worker", "-Q", "build", "-P", "prefork",
                         "-c", str(config["build_concurrency"]), "-n", "build@%h", "--loglevel", "INFO"],
        "launch-worker": [*celery, "worker", "-Q", "launch", "-P", "gevent",
                          "-c", str(config["launch_concurrency"]), "-n", "launch@%h", "--loglevel", "INFO"],
        "beat": [*celery, "beat", "--loglevel", "INFO",
                 "-s", str(Path(config["data_dir"]) / "celerybeat-schedule")],
        "web": [python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        "flower": [*celery, "flower", "--address=127.0.0.1", f"--port={config['flower_port']}"],
    }


def main() -> int:
    try:
        config = load_config()
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    env = dict(os.environ)
    embedded = None
    if not config["redis_url"]:
        embedded = EmbeddedRedis(Path(config["data_dir"]) / "redis", port=int(env.get("BINDERY_REDIS_PORT", 0)) or None)
        embedded.start()
        env["REDIS_URL"] = embedded.url
        print(f"bindery: embedded Redis at {embedded.url} (data in {embedded.directory})", flush=True)
    # Web and workers record metrics into one directory, so the web's /metrics shows them all.
    metrics_dir = Path(config["data_dir"]) / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for role, command in commands(config).items():
            # Own sessions: Ctrl-C reaches only the runner, which stops everyone in order.
            procs[role] = subprocess.Popen(command, env=env, start_new_session=True)
        print(f"bindery: serving on http://127.0.0.1:{config['port']}/ "
              f"(Flower on http://127.0.0.1:{config['flower_port']}/); Ctrl-C stops everything", flush=True)
        while not stopping:
            for role, proc in procs.items():
                if proc.poll() is not None:
                    print(f"bindery: {role} exited with {proc.returncode}; stopping", file=sys.stderr)
                    stopping = True
            time.sleep(0.5)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if embedded:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
