"""Scale-out: matches/s and heartbeat capacity of SQLite (one process) against PostgreSQL
with 1, 2 and 3 coordinator replicas, on this machine, with the CPU each request costs
each replica and the database.

    .venv/bin/python -m bench.scaleout                  # 20,000 waiting, 10,000 running jobs
    .venv/bin/python -m bench.scaleout --smoke          # small, for CI

For each setup the same data is seeded below HTTP (``bench/seeding.py``: 50 requirement
groups, two owners): Waiting jobs for the match runs, Running jobs held by pilots of 50
jobs each for the heartbeat runs. PostgreSQL is a throw-away cluster started by
``tests/services/postgres.py`` (durability off, as in the tests: commit cost is not what is
compared). The load (``bench/httpload.py``: closed loops over keep-alive connections, in two
load processes) is spread evenly over the replicas' own ports, as a load balancer would;
haproxy is left out so that the figures are the coordinators' (it costs its own CPU).
Last, one sandbox (``--download-mb``) is downloaded with curl from a coordinator over its
local store, from one streaming it from S3 (SeaweedFS), and from S3 directly by a
presigned URL: what streaming through the coordinator costs.

Per setup, three closed-loop runs at the same concurrency and request count:

- ``health``: ``GET /health``, the HTTP floor of the server stack (no database);
- ``match``: ``POST /pilots/{id}/match`` (n=1) from registered pilots;
- ``heartbeat``: ``POST /pilots/{id}/heartbeat`` carrying the pilot's 50 jobs.

Reported: requests/s, matches/s or job heartbeats/s, p50/p99, CPU ms per request of each
replica and of PostgreSQL (all its processes), and the running jobs the heartbeat rate
carries at 30 s intervals. Checked: no job handed out twice across all match runs of a
setup. Prints a table and writes ``bench/results/scaleout.json``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil

from bench import httpload, matching, seeding
from bench.harness import arguments, start_coordinator, stop, write_result
from bench.heartbeats import heartbeat_requests
from coordinator.logic.auth import SIGNING_KEY_FILE

SETUPS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2), ("postgresql", 3))
RUNS = ("health", "match", "heartbeat")
JOBS_PER_PILOT = 50
HEARTBEAT_INTERVAL_S = 30.0
HELD: list[httpload.Request] = []
"""The heartbeat request of each held pilot; set before the load processes fork."""


async def heartbeat_setup(_conn: httpload.Connection, index: int) -> httpload.Request:
    return HELD[index % len(HELD)]


def heartbeat_request(state: httpload.Request, _i: int) -> httpload.Request:
    return state


def match_request(state: dict[str, Any], i: int) -> httpload.Request:
    """A match with a request id of its own, as a pilot sends it (``pilot/agent.py``): the
    coordinator records what it gave, for a retry (each client registers its own pilot)."""
    offer = {**state["offer"], "request_id": f"bench-{i}"}
    return httpload.Request("POST", state["path"], matching.headers(), offer)


def _plans(urls: list[str], clients: int, total: int, kind: str) -> list[httpload.ClosedLoop]:
    """``clients`` spread evenly over the replicas, ``total`` requests in all."""
    per_client = max(1, total // clients)
    plans, first = [], 0
    for index, url in enumerate(urls):
        host, port = url.removeprefix("http://").split(":")
        count = clients // len(urls) + (1 if index < clients % len(urls) else 0)
        setups: dict[str, tuple[Any, Any]] = {
            "health": (matching.no_setup, matching.health_request),
            "match": (matching.register_pilot, match_request),
            "heartbeat": (heartbeat_setup, heartbeat_request),
        }
        setup, next_request = setups[kind]
        plans.append(
            httpload.ClosedLoop(
                host, int(port), count, first, per_client, setup, next_request, kind == "match"
            )
        )
        first += count
    return plans


def _cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def _postgres_cpu(pid: int | None) -> float:
    """CPU seconds of the PostgreSQL server so far: the postmaster, its live backends, and
    (through the postmaster's children times) every backend that has exited."""
    if pid is None:
        return 0.0
    main = psutil.Process(pid)
    times = main.cpu_times()
    own = times.user + times.system + times.children_user + times.children_system
    return own + _cpu(main.children(recursive=True))


def run(
    servers: list[Any], urls: list[str], pg_pid: int | None, kind: str, clients: int, total: int
) -> dict[str, Any]:
    replicas = [psutil.Process(server.pid) for server in servers]
    before: dict[str, Any] = {}

    def on_start() -> None:
        before["replicas"] = [_cpu([p]) for p in replicas]
        before["pg"] = _postgres_cpu(pg_pid)

    reports = httpload.closed_loop(
        _plans(urls, clients, total, kind), 1.0 + clients * 0.02, on_start
    )
    replica_cpu = [_cpu([p]) - b for p, b in zip(replicas, before["replicas"])]
    pg_cpu = _postgres_cpu(pg_pid) - before["pg"]
    samples = [s for r in reports for s in r.samples]
    wall_s = max(r.finished_s for r in reports) - min(r.started_s for r in reports)
    latencies = [s.latency_s for s in samples]
    job_ids = [
        job["job_id"] for s in samples if isinstance(s.body, dict) for job in s.body.get("jobs", [])
    ]
    ok = sum(1 for s in samples if s.status == 200)
    per_replica = [len(samples) / len(urls)] * len(urls)
    result: dict[str, Any] = {
        "requests": len(samples),
        "errors": len(samples) - ok,
        "per_s": len(samples) / wall_s,
        "p50_ms": 1000 * httpload.percentile(latencies, 0.50),
        "p99_ms": 1000 * httpload.percentile(latencies, 0.99),
        "replica_cpu_ms": [1000 * c / max(1.0, n) for c, n in zip(replica_cpu, per_replica)],
        "postgres_cpu_ms": 1000 * pg_cpu / max(1, len(samples)),
        "client_cpu_ms": 1000 * sum(r.cpu_s for r in reports) / max(1, len(samples)),
        "job_ids": job_ids,
    }
    if kind == "match":
        result["matches_per_s"] = len(job_ids) / wall_s
        # A match that found nothing costs more (a reload of the task queues) and gives no
        # job: counted, so that a drained bench is seen for what it is.
        empty = [s for s in samples if isinstance(s.body, dict) and not s.body.get("jobs")]
        result["empty"] = len(empty)
    if kind == "heartbeat":
        # Client i sends HELD[i]'s heartbeat over and over (heartbeat_setup).
        carried = sum(len(HELD[i % len(HELD)].body["jobs"]) for i in range(clients)) / clients
        beats_per_s = ok * carried / wall_s
        result["jobs_per_heartbeat"] = carried
        result["job_heartbeats_per_s"] = beats_per_s
        result["running_jobs_carried"] = beats_per_s * HEARTBEAT_INTERVAL_S
    return result


@contextlib.contextmanager
def replicas(
    base: Path, count: int, database_url: str, profile: Path | None = None
) -> Iterator[tuple[list[Any], list[str], str]]:
    """``count`` coordinators on one database, sharing the first one's signing key;
    ``profile``: a directory to record a py-spy profile of each into."""
    servers, urls, token = [], [], ""
    options = list(matching.SERVE_OPTIONS)
    if database_url:
        options += ["--database-url", database_url]
    try:
        for index in range(count):
            extra = []
            if index:
                extra = ["--signing-key-file", str(base / "replica-0" / SIGNING_KEY_FILE)]
            data_dir = base / f"replica-{index}"
            data_dir.mkdir(parents=True, exist_ok=True)
            recording = None if profile is None else profile / f"{base.name}-{index}.raw"
            server, url, own_token = start_coordinator(
                data_dir, *options, *extra, profile=recording
            )
            servers.append(server)
            urls.append(url)
            token = token or own_token
        yield servers, urls, token
    finally:
        for server in servers:
            stop(server)


def bench_setup(base: Path, backend: str, count: int, args: Any, cluster: Any) -> dict[str, Any]:
    name = f"{backend}-{count}"
    data_dir = base / name
    data_dir.mkdir()
    url = cluster.create_database(name.replace("-", "_")) if backend == "postgresql" else ""
    seeding.seed_waiting(data_dir / "replica-0", args.waiting, database_url=url)
    pilots = [JOBS_PER_PILOT] * (args.running // JOBS_PER_PILOT)
    seeding.seed_waiting(data_dir / "replica-0", args.running + args.running // 2, database_url=url)
    # Enough cores that each pilot gets its 50 jobs (1-2 cores each): with the default 16
    # it got about 12, and the job heartbeat rates were counted at 50 per request.
    held = seeding.seed_running(
        data_dir / "replica-0", pilots, database_url=url, cores_free=2 * JOBS_PER_PILOT
    )
    jobs_per_beat = sum(len(job_ids) for _, job_ids in held) / max(1, len(held))
    print(f"{name}: {len(held)} pilots holding {jobs_per_beat:.1f} running jobs each", flush=True)
    pg_pid = cluster.pid() if backend == "postgresql" else None
    with replicas(data_dir, count, url, args.profile) as (servers, urls, token):
        matching.TOKEN = token
        HELD[:] = heartbeat_requests(held, token, batched=True)
        run(servers, urls, pg_pid, "match", 4, 200)  # warm-up: statements compiled
        figures: dict[str, Any] = {}
        totals = {"health": args.requests, "match": args.requests, "heartbeat": args.requests // 4}
        for kind in args.runs:
            figures[kind] = run(servers, urls, pg_pid, kind, args.clients, totals[kind])
            show(name, kind, figures[kind])
    handed = collections.Counter(job for f in figures.values() for job in f.pop("job_ids"))
    figures["duplicates"] = sum(1 for n in handed.values() if n > 1)
    return {"setup": name, "backend": backend, "replicas": count, **figures}


def show(name: str, kind: str, f: dict[str, Any]) -> None:
    rate = f.get("matches_per_s", f.get("job_heartbeats_per_s", f["per_s"]))
    cpu = "/".join(f"{c:.2f}" for c in f["replica_cpu_ms"])
    print(
        f"{name:<13} {kind:<9} {f['per_s']:>8.0f} req/s {rate:>9.0f}/s "
        f"p50 {f['p50_ms']:>6.1f} p99 {f['p99_ms']:>6.1f} ms  replica CPU {cpu} ms/req  "
        f"PostgreSQL {f['postgres_cpu_ms']:.2f} ms/req  errors {f['errors']}"
        + (f"  empty {f['empty']}" if "empty" in f else ""),
        flush=True,
    )


def _curl(url: str, dest: Path, headers: dict[str, str]) -> float:
    args = ["curl", "-sSf", "-o", str(dest), url]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    started = time.perf_counter()
    subprocess.run(args, check=True, timeout=600)
    return time.perf_counter() - started


def bench_downloads(base: Path, size_mb: int) -> dict[str, Any]:
    """One archive downloaded three ways with curl: from a coordinator over the local store,
    from a coordinator streaming it from S3, and from S3 directly (a presigned URL)."""
    import boto3

    from pilot.client import CoordinatorClient
    from tests.services.s3 import BUCKET, running_s3

    archive = base / "archive.bin"
    with open(archive, "wb") as out:
        for _ in range(size_mb):
            out.write(os.urandom(1024 * 1024))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    result: dict[str, Any] = {"size_mb": size_mb}
    with running_s3() as s3:
        saved = dict(os.environ)
        os.environ.update(s3.env())
        try:
            for name, store in (("local", ""), ("s3", s3.url("bench"))):
                data_dir = base / f"downloads-{name}"
                data_dir.mkdir()
                options = ("--sandbox-store", store) if store else ()
                server, url, token = start_coordinator(data_dir, *options)
                try:
                    CoordinatorClient(url, token).upload_sandbox(archive, digest)
                    proc = psutil.Process(server.pid)
                    cpu_before = _cpu([proc])
                    headers = {"Authorization": f"Bearer {token}"}
                    wall = _curl(f"{url}/api/v1/sandboxes/{digest}", base / "out", headers)
                    cpu = _cpu([proc]) - cpu_before
                finally:
                    stop(server)
                result[name] = {
                    "mb_per_s": size_mb / wall,
                    "coordinator_cpu_s_per_gb": cpu * 1024 / size_mb,
                }
            client = boto3.session.Session().client("s3")
            presigned = client.generate_presigned_url(
                "get_object",
                Params={"Bucket": BUCKET, "Key": f"bench/sandboxes/{digest[:2]}/{digest}"},
            )
            wall = _curl(presigned, base / "out", {})
            result["s3_direct"] = {"mb_per_s": size_mb / wall, "coordinator_cpu_s_per_gb": 0.0}
        finally:
            os.environ.clear()
            os.environ.update(saved)
    print(
        f"download {size_mb} MB: local store {result['local']['mb_per_s']:.0f} MB/s, "
        f"S3 through the coordinator {result['s3']['mb_per_s']:.0f} MB/s "
        f"({result['s3']['coordinator_cpu_s_per_gb']:.2f} CPU s/GB), "
        f"S3 direct {result['s3_direct']['mb_per_s']:.0f} MB/s",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    from tests.services.postgres import PostgresCluster

    parser = arguments(__doc__, "small sizes, for CI", "scaleout", profile=True)
    parser.add_argument("--waiting", type=int, default=20_000, help="Waiting jobs per setup")
    parser.add_argument("--running", type=int, default=10_000, help="Running jobs per setup")
    parser.add_argument("--clients", type=int, default=24, help="concurrent simulated pilots")
    parser.add_argument("--requests", type=int, default=4000, help="requests per run")
    parser.add_argument("--download-mb", type=int, default=256, help="sandbox download size")
    parser.add_argument(
        "--setups",
        type=_names(f"{backend}-{n}" for backend, n in SETUPS),
        default=[f"{backend}-{n}" for backend, n in SETUPS],
        help="comma-separated, of " + ", ".join(f"{backend}-{n}" for backend, n in SETUPS),
    )
    parser.add_argument(
        "--runs",
        type=_names(RUNS),
        default=list(RUNS),
        help="comma-separated, of " + ", ".join(RUNS),
    )
    parser.add_argument("--no-downloads", action="store_true", help="skip the download runs")
    args = parser.parse_args(argv)
    if args.smoke:
        # Each simulated pilot fits a tenth of the groups (one site and platform): enough
        # Waiting jobs that no pilot drains its queues within the smoke's 500 matches.
        args.waiting, args.running, args.clients, args.requests = 3000, 200, 6, 300
        args.download_mb = 8
    load = os.getloadavg()
    base = Path(tempfile.mkdtemp(prefix="gridpilot-bench-scaleout-"))
    cluster = PostgresCluster()
    cluster.start()
    try:
        results = [
            bench_setup(base, backend, n, args, cluster)
            for backend, n in SETUPS
            if f"{backend}-{n}" in args.setups
        ]
        downloads = None if args.no_downloads else bench_downloads(base, args.download_mb)
    finally:
        cluster.stop("immediate")
        shutil.rmtree(cluster.base_dir, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
    result = {
        "waiting": args.waiting,
        "running": args.running,
        "clients": args.clients,
        "requests": args.requests,
        "cpus": os.cpu_count(),
        "load_before": load,
        "load_after": os.getloadavg(),
        "setups": results,
        "downloads": downloads,
    }
    write_result(args.output, result)
    print(f"load average before {load}, after {result['load_after']}")
    errors = any(f.get("errors") for r in results for f in r.values() if isinstance(f, dict))
    return 1 if errors or any(r["duplicates"] for r in results) else 0


def _names(allowed: Iterable[str]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of some of ``allowed``."""
    known = list(allowed)

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose among {', '.join(known)}")
        return names

    return parse


if __name__ == "__main__":
    raise SystemExit(main())
