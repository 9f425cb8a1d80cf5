"""Launcher ``bench``: starts nothing and reports ready after ``bench_launch_delay``.

For benchmarks of the pipeline itself (bench/cached_launch.py): it measures
what Bindery adds around a launch without a container engine's start-up time.
It is never the default and its URL says what it is.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any


class BenchLauncher:
    def __init__(self, config: dict[str, Any]) -> None:
        self.delay = config["bench_launch_delay"]

    def launch(self, launch: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> tuple[str, str]:
        if self.delay:
            time.sleep(self.delay)
        return f"http://127.0.0.1:9/bench/{launch['id']}/", secrets.token_hex(16)

    def stop(self, launch_id: str) -> int:
        return 0

    def cleanup(self, max_age: float) -> int:
        return 0

    def ping(self) -> None:
        """Nothing to reach."""

    def running(self) -> int:
        return 0
