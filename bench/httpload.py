"""A light HTTP/1.1 load generator for the coordinator benchmarks.

The coordinator and the load share the same two cores, so the client must cost as little
CPU as it can: a minimal keep-alive HTTP/1.1 client over asyncio streams (no requests, no
urllib3), run in a few worker processes. Each worker reports its own CPU time so the
benchmarks can print what the client took.

Two shapes of load:

- closed loop (``closed_loop``): each simulated pilot holds one keep-alive connection and
  sends its next request as soon as the previous one is answered (matching);
- open loop (``open_loop``): requests are sent at fixed times whatever the answers, from a
  pool of keep-alive connections; latency counts from the scheduled time, so a slow server
  cannot hide its queueing by slowing the client down (heartbeats).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing
import os
import resource
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

HeadersT = dict[str, str]


class HttpError(Exception):
    """The server closed the connection or answered something we cannot parse."""


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        """Connect now rather than at the first request (whose latency it would add to)."""
        await self._open()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None

    async def request(
        self, method: str, path: str, headers: HeadersT, body: bytes = b""
    ) -> tuple[int, bytes]:
        """Send one request and read the whole answer: ``(status, body)``."""
        reader, writer = await self._open()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            return await self._read(reader)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            await self.close()
            raise HttpError(f"connection lost: {exc}") from exc

    async def _read(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        fields = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if fields.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)
        else:
            body = await reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return b"".join(parts)
        parts.append(data[:-2])


@dataclasses.dataclass
class Request:
    """What to send; ``body`` is JSON-encoded."""

    method: str
    path: str
    headers: HeadersT
    body: Any = None

    def payload(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()


@dataclasses.dataclass
class Sample:
    """One answered (or failed) request."""

    latency_s: float
    status: int
    body: Any = None


@dataclasses.dataclass
class WorkerReport:
    samples: list[Sample]
    cpu_s: float
    started_s: float
    finished_s: float


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def decode(status: int, data: bytes, keep_body: bool) -> Any:
    if not keep_body or not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


# -- closed loop ----------------------------------------------------------------------------

Setup = Callable[[Connection, int], Any]
"""An async function run once per simulated client (given its connection and its index)
before timing starts; returns the client's state."""
NextRequest = Callable[[Any, int], Request]
"""Builds request ``i`` of a simulated client from its state."""


@dataclasses.dataclass(frozen=True)
class ClosedLoop:
    host: str
    port: int
    clients: int
    first_client: int
    """Index of this worker's first client (clients are numbered across workers)."""
    requests_per_client: int
    setup: Setup
    next_request: NextRequest
    keep_body: bool = False


async def _exchange(conn: Connection, request: Request, since: float, keep_body: bool) -> Sample:
    """Send one request; its latency counts from ``since`` (perf_counter), status 0 if the
    connection failed."""
    try:
        status, data = await conn.request(
            request.method, request.path, request.headers, request.payload()
        )
    except HttpError:
        status, data = 0, b""
    return Sample(time.perf_counter() - since, status, decode(status, data, keep_body))


async def _closed_client(
    plan: ClosedLoop, index: int, start_at: float, samples: list[Sample]
) -> None:
    conn = Connection(plan.host, plan.port)
    state = await plan.setup(conn, index)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    for i in range(plan.requests_per_client):
        request = plan.next_request(state, i)
        samples.append(await _exchange(conn, request, time.perf_counter(), plan.keep_body))
    await conn.close()


async def _closed_main(plan: ClosedLoop, start_at: float) -> WorkerReport:
    samples: list[Sample] = []
    first = plan.first_client
    clients = [
        _closed_client(plan, index, start_at, samples)
        for index in range(first, first + plan.clients)
    ]
    task = asyncio.gather(*clients)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    cpu_before, started = cpu_s(), time.time()
    await task
    return WorkerReport(samples, cpu_s() - cpu_before, started, time.time())


def _closed_worker(plan: ClosedLoop, start_at: float) -> WorkerReport:
    return asyncio.run(_closed_main(plan, start_at))


def closed_loop(
    plans: Sequence[ClosedLoop], setup_s: float, on_start: Callable[[], None] = lambda: None
) -> list[WorkerReport]:
    """Run one worker process per plan; timing starts ``setup_s`` from now in all of them,
    when ``on_start`` is called in this process (to read the server's CPU time, say)."""
    start_at = time.time() + setup_s
    return _run_workers(_closed_worker, [(plan, start_at) for plan in plans], start_at, on_start)


# -- open loop ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OpenLoop:
    host: str
    port: int
    connections: int
    schedule: list[tuple[float, Request]]
    """(seconds after the start, request), in time order."""
    keep_body: bool = False


async def _open_sender(
    plan: OpenLoop, queue: asyncio.Queue[tuple[float, Request] | None], samples: list[Sample]
) -> None:
    conn = Connection(plan.host, plan.port)
    await conn.open()
    while True:
        item = await queue.get()
        if item is None:
            break
        due, request = item
        samples.append(await _exchange(conn, request, due, plan.keep_body))
    await conn.close()


async def _open_main(plan: OpenLoop, start_at: float) -> WorkerReport:
    samples: list[Sample] = []
    queue: asyncio.Queue[tuple[float, Request] | None] = asyncio.Queue()
    senders = [
        asyncio.ensure_future(_open_sender(plan, queue, samples)) for _ in range(plan.connections)
    ]
    await asyncio.sleep(max(0.0, start_at - time.time()))
    cpu_before, started = cpu_s(), time.time()
    origin = time.perf_counter()
    for offset_s, request in plan.schedule:
        delay = origin + offset_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((origin + offset_s, request))
    for _ in senders:
        queue.put_nowait(None)
    await asyncio.gather(*senders)
    return WorkerReport(samples, cpu_s() - cpu_before, started, time.time())


def _open_worker(plan: OpenLoop, start_at: float) -> WorkerReport:
    return asyncio.run(_open_main(plan, start_at))


def open_loop(
    plans: Sequence[OpenLoop], setup_s: float, on_start: Callable[[], None] = lambda: None
) -> list[WorkerReport]:
    start_at = time.time() + setup_s
    return _run_workers(_open_worker, [(plan, start_at) for plan in plans], start_at, on_start)


def _run_workers(
    target: Callable[..., WorkerReport],
    args: list[tuple[Any, ...]],
    start_at: float,
    on_start: Callable[[], None],
) -> list[WorkerReport]:
    # fork: the workers need nothing the parent has not loaded (and start fast).
    context = multiprocessing.get_context("fork")
    timer = threading.Timer(max(0.0, start_at - time.time()), on_start)
    with context.Pool(len(args)) as pool:
        timer.start()
        try:
            return pool.starmap(target, args)
        finally:
            timer.join()


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def machine() -> dict[str, Any]:
    with open("/proc/meminfo") as meminfo:
        total_kb = int(meminfo.readline().split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(total_kb / 1024 / 1024, 1),
        "load_average": load_average(),
    }


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages: how shared the cores were."""
    return [round(value, 2) for value in os.getloadavg()]
