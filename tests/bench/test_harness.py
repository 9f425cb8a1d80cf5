"""The benchmarks' shared harness (bench/_harness.py): clients spread over processes, sampled peaks.

The benchmarks themselves are far too heavy for the suite; this keeps the parts every one of them
relies on from rotting.  Real forked processes, nothing mocked.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "_harness.py"
_spec = importlib.util.spec_from_file_location("bench_harness", _PATH)
assert _spec and _spec.loader
harness: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)


async def _numbers(count: int, report: Any, stop: Any, *, scale: int) -> list[int]:
    report("open", count)
    await harness.stopped(stop)
    return [i * scale for i in range(count)]


async def _broken(count: int, report: Any, stop: Any) -> None:
    raise ValueError("no such host")


def test_client_pool_splits_the_clients_and_collects_each_share() -> None:
    with harness.ClientPool(harness.with_args(_numbers, scale=2), 5, 2) as pool:
        assert pool.gather("open", timeout=30) == [3, 2], "5 clients over 2 processes"
        assert pool.results(timeout=30) == [[0, 2, 4], [0, 2]]
        assert pool.cpu_seconds() >= 0
    assert not any(proc.is_alive() for proc in pool.procs)


def test_a_failing_client_process_is_reported_not_waited_for() -> None:
    with harness.ClientPool(_broken, 2, 2) as pool, pytest.raises(harness.BenchError, match="no such host"):
        pool.gather("open", timeout=30)


def test_sampler_keeps_the_peak_of_each_figure() -> None:
    values = iter([1.0, 5.0, 2.0])
    probes = {"x": lambda: next(values, 0.0), "conns": lambda: {"web": 3.0}}
    with harness.Sampler(probes, period=0.01) as sampler:
        time.sleep(0.1)
    assert sampler.peaks == {"x": 5.0, "conns_web": 3.0}


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (harness.percentile(values, 50), harness.percentile(values, 99)) == (50.0, 99.0)
