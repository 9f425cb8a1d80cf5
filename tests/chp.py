"""configurable-http-proxy (CHP) for tests: one process on 127.0.0.1 free ports, stopped by its pid."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import IO

from app.redis_server import free_port, stop_process
from tasks.backends.proxy_routes import ProxyAPI
from tests.clients import wait_for

CHP = shutil.which("configurable-http-proxy") or "configurable-http-proxy"


class Chp:
    """A CHP whose default target is ``default_target``; its token only in its environment."""

    def __init__(self, directory: Path, default_target: str = "") -> None:
        self.directory = directory
        self.port = free_port()
        self.api_port = free_port()
        self.token = secrets.token_urlsafe(32)
        self.default_target = default_target
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def api(self) -> ProxyAPI:
        return ProxyAPI(self.api_url, self.token)

    def start(self) -> Chp:
        """Start it (again, on the same ports: a restart loses every route) and wait for its API."""
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [CHP, "--ip", "127.0.0.1", "--port", str(self.port), "--api-ip", "127.0.0.1",
                   "--api-port", str(self.api_port)]
        if self.default_target:
            command += ["--default-target", self.default_target]
        self._log = open(self.directory / "chp.log", "ab")
        self.process = subprocess.Popen(command, env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": self.token},
                                        stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        api = self.api()
        wait_for(api.answers, 30, lambda: f"CHP's API to answer: {(self.directory / 'chp.log').read_text()}")
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        if self._log:
            self._log.close()
            self._log = None
