"""Shared pieces of the benchmarks: services they start and stop, a fast SSE client, reporting.

Everything listens on 127.0.0.1 only.  What a benchmark starts it stops, by the
Popen / container id it holds; nothing is ever stopped by name.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing
import os
import resource
import shutil
import socket
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from tests.conftest import JUPYTER_IMAGE, LOOPBACK_ALLOWED, REGISTRY_PORT, GitServer, counting_repo2docker  # noqa: E402
from tests.stack import LocalRegistry, Stack, collect  # noqa: E402

DEFAULT_DOCKER_HOST = "unix:///run/bindery/podman.sock"


class BenchError(RuntimeError):
    pass


# --- arguments / output ------------------------------------------------------------------------

def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs) afterwards")
    return p


def say(*parts: Any) -> None:
    """Progress goes to stderr so that --json output stays clean."""
    print(*parts, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    for row in rows[1:]:
        columns += [c for c in row if c not in columns]

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
        return "" if value is None else str(value)

    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))


def emit(args: argparse.Namespace, result: dict[str, Any], tables: list[tuple[str, list[dict[str, Any]]]]) -> None:
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        for title, rows in tables:
            print_table(title, rows)
        for note in result.get("notes", []):
            print(f"note: {note}")


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- services ------------------------------------------------------------------------------------

def port_busy(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# Every benchmark client comes from 127.0.0.1: per-address limits would measure themselves.
NO_CLIENT_LIMITS = {"rate_limit": 0, "max_streams_per_ip": 0}


class Bench:
    """Owns a work directory and everything started in it; ``close()`` stops it all in reverse order."""

    def __init__(self, name: str, keep: bool = False) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix=f"bindery-bench-{name}-"))
        self.keep = keep
        self._exit = ExitStack()
        self.docker_host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(failed=exc[0] is not None)

    def close(self, failed: bool = False) -> None:
        self._exit.close()
        if self.keep or failed:
            say(f"work directory kept: {self.directory}")
        else:
            shutil.rmtree(self.directory, ignore_errors=True)

    def callback(self, fn: Callable[..., Any], *args: Any) -> None:
        self._exit.callback(fn, *args)

    def registry(self) -> LocalRegistry:
        registry = LocalRegistry(self.directory / "registry", REGISTRY_PORT)
        self._exit.callback(registry.stop)
        return registry.start()

    def git_server(self) -> GitServer:
        (self.directory / "git").mkdir(exist_ok=True)
        server = GitServer(self.directory / "git")
        self._exit.callback(server.stop)
        return server

    def build_counter(self) -> tuple[Path, list[str]]:
        """(runs file, repo2docker command): the real repo2docker, each run recorded."""
        directory = self.directory / "r2d"
        directory.mkdir(exist_ok=True)
        return counting_repo2docker(directory)

    def stack(self, name: str, settings: dict[str, Any], *, beat: bool = False) -> Stack:
        # Its git servers and registry are on loopback, which Bindery refuses unless allowed.
        stack = Stack(self.directory / name, {**LOOPBACK_ALLOWED, **NO_CLIENT_LIMITS, **settings}, beat=beat)
        self._exit.callback(stack.stop)
        say(f"starting stack {name} ...")
        return stack.start()

    def engine(self) -> Any:
        import docker

        from app.extensions import docker_client

        client = docker_client(self.docker_host)
        try:
            client.images.get(JUPYTER_IMAGE)
        except docker.errors.ImageNotFound:
            raise BenchError(f"{JUPYTER_IMAGE} is missing: `make test` builds it (scripts/base-image.sh)") from None
        return client


def quick_dockerfile() -> str:
    """An image of its own in seconds: Jupyter comes from the local Jupyter base."""
    return f"FROM {JUPYTER_IMAGE}\nRUN echo {uuid.uuid4().hex} > /home/jovyan/.build-id\n"


def build_path(repo_url: str, ref: str, query: str = "") -> str:
    return f"/build/git/{urllib.parse.quote(repo_url, safe='')}/{ref}{query}"


def build_once(stack: Stack, repo_url: str, sha: str, timeout: float = 600) -> str:
    """Build and push through Bindery itself (build_only); returns the image name."""
    t0 = time.monotonic()
    events = collect(stack.url + build_path(repo_url, sha, "?build_only=true"), timeout=timeout)
    last = events[-1][1] if events else {}
    if last.get("phase") != "ready":
        raise BenchError(f"build_only did not end ready: {events[-3:]}\n{stack.log('build')}")
    say(f"built and pushed {last.get('imageName')} in {time.monotonic() - t0:.1f} s")
    return str(last.get("imageName"))


def remove_image(engine: Any, image: str) -> None:
    """Remove the one tag this benchmark built (never anything else)."""
    import docker

    try:
        engine.images.remove(image, noprune=False)
    except docker.errors.APIError as exc:
        say(f"could not remove image {image}: {exc}")


LAUNCH_LABEL = "org.bindery.launch"


def remove_containers(engine: Any, launch_id: str) -> int:
    """Remove the containers of one launch (found by its label), each by its own id."""
    removed = 0
    for container in engine.containers.list(ignore_removed=True,
            all=True, filters={"label": [f"{LAUNCH_LABEL}={launch_id}"]}):
        if container.labels.get(LAUNCH_LABEL) == launch_id:
            container.remove(force=True)
            removed += 1
    return removed


def remove_instance_containers(engine: Any, instance: str) -> int:
    """Remove what one benchmark stack launched (its own ``instance_name``), each by its own id."""
    label = "org.bindery.instance"
    removed = 0
    for container in engine.containers.list(ignore_removed=True, all=True, filters={"label": [f"{label}={instance}"]}):
        if container.labels.get(label) == instance:
            container.remove(force=True)
            removed += 1
    if removed:
        say(f"removed {removed} containers left by {instance}")
    return removed


# --- a small, fast SSE client on raw asyncio sockets ----------------------------------------------

class SSEConnection:
    """One ``GET`` of an event stream over HTTP/1.1 (chunked) on a raw socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.chunked = False
        self._buffer = b""

    @classmethod
    async def open(cls, host: str, port: int, path: str, headers: dict[str, str] | None = None,
                   timeout: float = 30) -> SSEConnection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 20), timeout)
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream",
                 "Cache-Control: no-cache"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        conn = cls(reader, writer)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        conn.status = int(status_line.split()[1])
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                conn.chunked = True
        if conn.status != 200:
            conn.close()
            raise BenchError(f"HTTP {conn.status} for {path}")
        return conn

    async def _more(self) -> bool:
        """Append the next piece of body to the buffer; False at the end of the body."""
        if not self.chunked:
            data = await self.reader.read(65536)
            self._buffer += data
            return bool(data)
        size_line = await self.reader.readline()
        if not size_line:
            return False
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return False
        data = await self.reader.readexactly(size + 2)
        self._buffer += data[:-2]
        return True

    async def items(self) -> AsyncIterator[tuple[str, Any, str | None]]:
        """Yields ("comment", text, None) and ("event", data, id) as they arrive."""
        while True:
            while b"\n\n" in self._buffer:
                block, self._buffer = self._buffer.split(b"\n\n", 1)
                data, event_id, comments = [], None, []
                for line in block.decode().split("\n"):
                    if line.startswith(":"):
                        comments.append(line)
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip(" "))
                    elif line.startswith("id:"):
                        event_id = line[3:].strip()
                for comment in comments:
                    yield "comment", comment, None
                if data:
                    yield "event", json.loads("\n".join(data)), event_id
            if not await self._more():
                return

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass


def host_port(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def require_loopback(url: str) -> None:
    host, _ = host_port(url)
    if host != "127.0.0.1":
        raise BenchError(f"refusing a non-loopback address: {url}")


def main_wrapper(run: Callable[[], int]) -> None:
    try:
        sys.exit(run())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


# --- where the CPU goes ----------------------------------------------------------------------------

def stack_processes(stack: Stack, registry: LocalRegistry | None = None) -> dict[str, list[int]]:
    """pids by role: each Popen with its children (gunicorn/celery workers), Redis, the registry."""
    import psutil

    roles: dict[str, list[int]] = {}
    for role, proc in stack.processes.items():
        try:
            parent = psutil.Process(proc.pid)
            roles[role] = [proc.pid] + [c.pid for c in parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            roles[role] = []
    if stack.redis.process:
        roles["redis"] = [stack.redis.process.pid]
    if registry and registry.process:
        roles["registry"] = [registry.process.pid]
    return roles


def cpu_seconds(roles: dict[str, list[int]]) -> dict[str, float]:
    import psutil

    out: dict[str, float] = {}
    for role, pids in roles.items():
        total = 0.0
        for pid in pids:
            try:
                t = psutil.Process(pid).cpu_times()
                # with the children it waited for (git, repo2docker), not the workers still running
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.NoSuchProcess:
                pass
        out[role] = total
    return out


# --- clients in several processes -----------------------------------------------------------------

ClientMain = Callable[[int, Callable[[str, Any], None], Any], Coroutine[Any, Any, Any]]


def _client_process(main: ClientMain, count: int, index: int, stop: Any, queue: Any) -> None:
    def report(kind: str, payload: Any) -> None:
        queue.put((kind, index, payload))

    raise_nofile()
    try:
        report("result", asyncio.run(main(count, report, stop)))
    except BaseException as exc:  # the parent must hear about it rather than wait
        report("error", f"{type(exc).__name__}: {exc}"[:300])


async def stopped(stop: Any) -> None:
    """Wait (in a thread) for a ClientPool's stop event."""
    await asyncio.to_thread(stop.wait)


class ClientPool:
    """``total`` clients split over ``processes`` forked processes, so the load generator is never
    the bottleneck on its own core; each runs ``main(count, report, stop)`` in its own event loop.

    ``main`` calls ``report(kind, payload)`` to tell the parent something (e.g. "open") and
    returns its result.  The processes are ours: they are stopped by their own handles.
    """

    def __init__(self, main: ClientMain, total: int, processes: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self.stop = ctx.Event()
        self._queue: Any = ctx.Queue()
        processes = max(1, min(processes, total))
        shares = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
        self.procs = [ctx.Process(target=_client_process, args=(main, n, i, self.stop, self._queue), daemon=True)
                      for i, n in enumerate(shares)]
        self._pending: list[tuple[str, int, Any]] = []

    def __enter__(self) -> ClientPool:
        for proc in self.procs:
            proc.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()  # by its own handle
                proc.join()

    def gather(self, kind: str, timeout: float) -> list[Any]:
        """One ``kind`` message from every process (by process index); raises if one failed."""
        got: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        for item in list(self._pending):
            if item[0] == kind:
                self._pending.remove(item)
                got[item[1]] = item[2]
        while len(got) < len(self.procs):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"client processes did not all report {kind!r} within {timeout} s")
            try:
                item = self._queue.get(timeout=min(remaining, 1))
            except Exception:
                if not any(p.is_alive() for p in self.procs) and self._queue.empty():
                    raise BenchError("client processes exited without reporting") from None
                continue
            if item[0] == "error":
                raise BenchError(f"client process {item[1]} failed: {item[2]}")
            if item[0] == kind:
                got[item[1]] = item[2]
            else:
                self._pending.append(item)
        return [got[i] for i in sorted(got)]

    def results(self, timeout: float = 120) -> list[Any]:
        """Stop the clients and collect what each process returned."""
        self.stop.set()
        return self.gather("result", timeout)

    def cpu_seconds(self) -> float:
        import psutil

        total = 0.0
        for proc in self.procs:
            try:
                t = psutil.Process(proc.pid).cpu_times()
                total += t.user + t.system
            except (psutil.NoSuchProcess, ValueError, TypeError):
                pass
        return total


def with_args(main: Callable[..., Coroutine[Any, Any, Any]], **kwargs: Any) -> ClientMain:
    """``main`` with its fixed arguments bound (a ClientPool entry point)."""
    return functools.partial(main, **kwargs)


def redis_figures(client: Any) -> dict[str, float]:
    """Connected clients and commands processed so far, from INFO."""
    info = client.info()
    return {"connected_clients": float(info["connected_clients"]),
            "commands": float(info["total_commands_processed"])}


class Sampler:
    """Samples figures in a thread every ``period`` s while a run goes on; keeps each one's peak.

    A probe returns a number, or a dict of numbers (peaks kept as ``<probe>_<key>``).
    """

    def __init__(self, probes: dict[str, Callable[[], Any]], period: float = 0.25) -> None:
        import threading

        self.probes = probes
        self.period = period
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def _sample(self) -> None:
        for name, probe in self.probes.items():
            try:
                value = probe()
            except Exception:
                continue
            values = {f"{name}_{k}": v for k, v in value.items()} if isinstance(value, dict) else {name: value}
            for key, number in values.items():
                self.peaks[key] = max(number, self.peaks.get(key, number))

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def __enter__(self) -> Sampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def rss_of(pids: list[int]) -> float:
    """Resident memory of these processes together, in bytes."""
    import psutil

    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return float(total)


def log_problems(stack: Stack) -> dict[str, int]:
    """Tracebacks, ERROR lines and 5xx responses in each log of the stack (should all be 0)."""
    import re

    counts: dict[str, int] = {}
    for role in stack.processes:
        text = (stack.directory / f"{role}.log").read_text(errors="replace")
        counts[role] = text.count("Traceback") + len(re.findall(r"\bERROR\b", text))
        if role == "web":
            counts["web 5xx"] = len(re.findall(r'" 5\d\d ', text))
    return counts
