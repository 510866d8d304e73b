"""Matching: how many jobs a coordinator hands out per second, and does it stay flat?

    .venv/bin/python -m bench.matching                 # 1k, 10k, 100k, 1M waiting jobs
    .venv/bin/python -m bench.matching --smoke         # small sizes, for CI

For each size, the jobs (50 requirement groups: site, platform, tags, cores, memory, CPU
time; two owners, so 50 task queues) are seeded in-process with the coordinator's own
``coordinator.logic.jobs.submit`` (see ``bench/seeding.py``), then ``gridpilot serve``
starts on that data dir and simulated pilots, each registered over HTTP with a node that
fits 5 of the 50 groups, call ``POST /api/v1/pilots/{id}/match`` (n=1) back to back over
keep-alive connections from separate load processes (``bench/httpload.py``).

In the same run, interleaved with each match run, two floors at the same concurrency and
request count: ``GET /health`` of this coordinator (its cheapest route, through FastAPI and
a database read) and the very match requests sent to a bare ASGI app under the same uvicorn
that reads them and answers ``{}`` (``bench/http_floor.py``): what any request costs before
the coordinator does anything. "cost" is a match request's coordinator CPU over the bare
app's.

``--jobs-per-match 1,8`` asks for k jobs per request (``n=k``, a pilot with k free slots;
the simulated node has max(8, 2k) cores): "match/s" counts jobs handed out per second.

Checked: every job id handed out appears exactly once across all runs against a data
dir, and the database agrees: exactly those jobs are Matched, each with one Matched entry
in its history.

Prints a table and writes ``bench/results/matching.json``.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import func, select

from bench import http_floor, httpload, seeding
from bench.harness import arguments, start_coordinator, stop, write_result
from coordinator.store.database import Database
from coordinator.store.schema import job_history, jobs
from protocol import (
    API_PREFIX,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    JobStatus,
    MatchRequest,
)

SERVE_OPTIONS = ("--rate-limit-per-s", "1000000", "--log-level", "INFO")
"""The rate limiter stays in the path but cannot refuse: one simulated pilot sends more
than the default 200 requests/s a real one never would."""
GOAL_MATCHES_PER_S = 2000.0
GOAL_P99_MS = 50.0
GOAL_FLAT_RATIO = 1.5
GOAL_COST_RATIO = 1.5
WARM_UP_REQUESTS = 100
TOKEN = ""  # set in main() before the load processes fork


def headers() -> dict[str, str]:
    return {
        "Authorization": f"Bearer {TOKEN}",
        PROTOCOL_HEADER: str(PROTOCOL_VERSION),
        "Content-Type": "application/json",
    }


async def register_pilot(
    conn: httpload.Connection, index: int, jobs_per_match: int = 1
) -> dict[str, Any]:
    registration = seeding.pilot_registration(index, cores=max(8, 2 * jobs_per_match))
    body = json.dumps(registration.to_dict()).encode()
    status, data = await conn.request("POST", f"{API_PREFIX}/pilots", headers(), body)
    if status != 201:
        raise httpload.HttpError(f"registration answered {status}: {data[:200]!r}")
    offer = MatchRequest(
        n=jobs_per_match,
        cores_free=registration.cores,
        memory_free_mb=registration.memory_mb,
        time_left_s=registration.time_left_s,
        site=registration.site,
        platform=registration.platform,
        tags=list(registration.tags),
    )
    return {
        "path": f"{API_PREFIX}/pilots/{json.loads(data)['pilot_id']}/match",
        "offer": offer.to_dict(),
    }


def match_request(state: dict[str, Any], _i: int) -> httpload.Request:
    return httpload.Request("POST", state["path"], headers(), state["offer"])


async def no_setup(_conn: httpload.Connection, _index: int) -> None:
    return None


def health_request(_state: None, _i: int) -> httpload.Request:
    return httpload.Request("GET", "/health", {})


async def floor_setup(_conn: httpload.Connection, index: int) -> dict[str, Any]:
    """A pilot's match request as the coordinator would get it, for the bare ASGI floor."""
    offer = MatchRequest(n=1, cores_free=8, memory_free_mb=16_000, tags=list(seeding.ALL_TAGS))
    return {"path": f"{API_PREFIX}/pilots/{index:024x}/match", "offer": offer.to_dict()}


LOADS: dict[str, tuple[Any, httpload.NextRequest]] = {
    "health": (no_setup, health_request),
    "asgi": (floor_setup, match_request),
}
"""The floors: how a client of each starts and what it sends."""


def plans(
    url: str, clients: int, total: int, load: str, jobs_per_match: int = 1
) -> list[httpload.ClosedLoop]:
    """Split ``clients`` over one or two load processes, ``total`` requests in all."""
    host, port = url.removeprefix("http://").split(":")
    processes = 1 if clients < 4 else 2
    per_client = max(1, total // clients)
    matching = (functools.partial(register_pilot, jobs_per_match=jobs_per_match), match_request)
    setup, next_request = LOADS.get(load, matching)
    result, first = [], 0
    for p in range(processes):
        count = clients // processes + (1 if p < clients % processes else 0)
        result.append(
            httpload.ClosedLoop(
                host,
                int(port),
                count,
                first,
                per_client,
                setup=setup,
                next_request=next_request,
                keep_body=load == "match",
            )
        )
        first += count
    return result


def run_load(
    server: subprocess.Popen[bytes],
    url: str,
    clients: int,
    total: int,
    load: str,
    jobs_per_match: int = 1,
) -> dict[str, Any]:
    """One closed-loop run; figures plus the job ids handed out (for the duplicate check)."""
    proc = psutil.Process(server.pid)
    setup_s = 1.0 + clients * 0.02
    before: list[float] = []
    load_before = httpload.load_average()[0]
    reports = httpload.closed_loop(
        plans(url, clients, total, load, jobs_per_match),
        setup_s,
        on_start=lambda: before.append(sum(proc.cpu_times()[:2])),
    )
    server_cpu_s = sum(proc.cpu_times()[:2]) - before[0]
    samples = [s for r in reports for s in r.samples]
    wall_s = max(r.finished_s for r in reports) - min(r.started_s for r in reports)
    latencies = [s.latency_s for s in samples]
    job_ids = [
        job["job_id"] for s in samples if isinstance(s.body, dict) for job in s.body.get("jobs", [])
    ]
    errors = sum(1 for s in samples if s.status != 200)
    return {
        "clients": clients,
        "jobs_per_match": jobs_per_match,
        "load_average_1m": [load_before, httpload.load_average()[0]],
        "requests": len(samples),
        "errors": errors,
        "matched": len(job_ids),
        "per_s": len(samples) / wall_s,
        "matches_per_s": len(job_ids) / wall_s,
        "p50_ms": 1000 * httpload.percentile(latencies, 0.50),
        "p99_ms": 1000 * httpload.percentile(latencies, 0.99),
        "server_cpu_ms": 1000 * server_cpu_s / max(1, len(samples)),
        "client_cpu_ms": 1000 * sum(r.cpu_s for r in reports) / max(1, len(samples)),
        "job_ids": job_ids,
    }


Floor = tuple[subprocess.Popen[bytes], str]


def paired_run(
    server: subprocess.Popen[bytes],
    url: str,
    floor: Floor,
    clients: int,
    total: int,
    jobs_per_match: int,
) -> dict[str, Any]:
    """The two floors, then matching, at the same concurrency and request count."""
    health = run_load(server, url, clients, total, "health")
    bare = run_load(*floor, clients, total, "asgi")
    matched = run_load(server, url, clients, total, "match", jobs_per_match)
    health.pop("job_ids")
    bare.pop("job_ids")
    return {"match": matched, "health": health, "asgi": bare}


def check_database(data_dir: Path, handed_out: list[int]) -> dict[str, Any]:
    """Each id handed out once, and the database holds exactly those as Matched, once each."""
    repeats = {job_id: n for job_id, n in collections.Counter(handed_out).items() if n > 1}
    db = Database(f"sqlite:///{data_dir / 'gridpilot.db'}")
    try:
        with db.read() as conn:
            matched_now = {
                int(row.job_id)
                for row in conn.execute(
                    select(jobs.c.job_id).where(jobs.c.status == JobStatus.MATCHED.value)
                )
            }
            entries = conn.execute(
                select(job_history.c.job_id, func.count())
                .where(job_history.c.status == JobStatus.MATCHED.value)
                .group_by(job_history.c.job_id)
            ).all()
    finally:
        db.dispose()
    matched_twice = sorted(int(job_id) for job_id, n in entries if n != 1)
    return {
        "handed_out": len(handed_out),
        "duplicates_in_replies": len(repeats),
        "matched_in_database": len(matched_now),
        "database_agrees": matched_now == set(handed_out) and not matched_twice,
        "matched_more_than_once_in_history": len(matched_twice),
    }


def bench_size(
    base: Path, size: int, runs: list[tuple[int, int, int]], floor: Floor, profile: Path | None
) -> dict[str, Any]:
    """Seed ``size`` Waiting jobs, serve them, and do each ``(clients, requests, k)`` run."""
    global TOKEN
    data_dir = base / f"waiting-{size}"
    seed_s = seeding.seed_waiting(data_dir, size)
    profile_file = None if profile is None else profile / f"matching-{size}.raw"
    server, url, TOKEN = start_coordinator(data_dir, *SERVE_OPTIONS, profile=profile_file)
    handed_out: list[int] = []
    results = []
    try:
        # Warm-up, not reported: the first requests of a fresh server compile its SQL.
        warm_up = run_load(server, url, 2, min(WARM_UP_REQUESTS, size // 50), "match")
        handed_out += warm_up["job_ids"]
        for clients, total, jobs_per_match in runs:
            result = paired_run(server, url, floor, clients, total, jobs_per_match)
            handed_out += result["match"].pop("job_ids")
            results.append(result)
            show(size, result)
    finally:
        stop(server)
    return {
        "waiting": size,
        "seed_s": seed_s,
        "warm_up_matches": len(warm_up["job_ids"]),
        "runs": results,
        "check": check_database(data_dir, handed_out),
    }


MIN_FLOOR_CPU_S = 0.05
"""Less CPU than this in a whole floor run is too few clock ticks to divide by."""


def cost_ratio(run: dict[str, Any]) -> float | None:
    """A match request's coordinator CPU over a bare ASGI request's, when measurable."""
    floor = run["asgi"]
    if floor["server_cpu_ms"] * floor["requests"] / 1000 < MIN_FLOOR_CPU_S:
        return None
    return float(run["match"]["server_cpu_ms"] / floor["server_cpu_ms"])


def show(size: int, run: dict[str, Any]) -> None:
    m, h, a = run["match"], run["health"], run["asgi"]
    cells = [
        f"{size:>9,}",
        f"{m['clients']:>6}",
        f"{m['jobs_per_match']:>3}",
        f"{m['requests']:>6}",
        f"{m['matches_per_s']:>8.0f}",
        f"{m['per_s']:>7.0f}",
        f"{m['p50_ms']:>7.1f}",
        f"{m['p99_ms']:>7.1f}",
        f"{m['server_cpu_ms']:>7.2f}",
        f"{m['client_cpu_ms']:>6.2f}  ",
        f"{h['per_s']:>7.0f}",
        f"{h['p99_ms']:>6.1f}",
        f"{h['server_cpu_ms']:>6.2f}  ",
        f"{a['per_s']:>7.0f}",
        f"{a['p99_ms']:>6.1f}",
        f"{a['server_cpu_ms']:>6.2f}  ",
        f"{cost:>5.1f}x" if (cost := cost_ratio(run)) is not None else f"{'-':>6}",
        f"{m['load_average_1m'][1]:>5.1f}",
    ]
    print(" ".join(cells), flush=True)


HEADER = (
    f"{'waiting':>9} {'pilots':>6} {'k':>3} {'reqs':>6} {'match/s':>8} {'reqs/s':>7} "
    f"{'p50 ms':>7} {'p99 ms':>7} {'srv ms':>7} {'cli ms':>6}   "
    f"{'health/s':>7} {'p99':>6} {'srv ms':>6}   {'asgi/s':>7} {'p99':>6} {'srv ms':>6}   "
    f"{'cost':>6} {'load':>5}"
)


def summary(sizes: list[dict[str, Any]], reference: int, scale_clients: int) -> dict[str, Any]:
    """The goals: throughput and p99 at the reference size, flatness across sizes."""
    scale = {
        s["waiting"]: next(r["match"] for r in s["runs"] if r["match"]["clients"] == scale_clients)
        for s in sizes
    }
    at_ref = [r["match"] for s in sizes if s["waiting"] == reference for r in s["runs"]]
    best = max(at_ref, key=lambda m: m["matches_per_s"])
    costs = [
        cost
        for s in sizes
        for r in s["runs"]
        if r["match"]["jobs_per_match"] == 1 and (cost := cost_ratio(r)) is not None
    ]
    smallest, largest = min(scale), max(scale)
    flat = scale[largest]["server_cpu_ms"] / scale[smallest]["server_cpu_ms"]
    flat_p50 = scale[largest]["p50_ms"] / scale[smallest]["p50_ms"]
    return {
        "best_matches_per_s": best["matches_per_s"],
        "best_at_pilots": best["clients"],
        "best_at_jobs_per_match": best["jobs_per_match"],
        "cost_over_asgi_floor": [min(costs, default=0.0), max(costs, default=0.0)],
        "worst_p99_ms": max(m["p99_ms"] for m in at_ref),
        "cost_ratio_cpu": flat,
        "cost_ratio_p50": flat_p50,
        "cost_sizes": [smallest, largest],
        "no_duplicates": all(
            s["check"]["duplicates_in_replies"] == 0 and s["check"]["database_agrees"]
            for s in sizes
        ),
    }


def print_summary(result: dict[str, Any]) -> None:
    sm = result["summary"]
    lo, hi = sm["cost_sizes"]
    print()
    print(
        f"matches/s at {result['reference']:,} waiting: {sm['best_matches_per_s']:.0f} "
        f"(with {sm['best_at_pilots']} pilots, k={sm['best_at_jobs_per_match']})   "
        f"goal >= {GOAL_MATCHES_PER_S:.0f}"
    )
    low, high = sm["cost_over_asgi_floor"]
    print(
        f"match request (k=1) / bare ASGI request, coordinator CPU: {low:.1f}x to {high:.1f}x   "
        f"goal <= {GOAL_COST_RATIO}x"
    )
    print(
        f"worst p99 at {result['reference']:,} waiting: {sm['worst_p99_ms']:.1f} ms   "
        f"goal < {GOAL_P99_MS:.0f} ms"
    )
    print(
        f"cost per match {hi:,} vs {lo:,} waiting: server CPU {sm['cost_ratio_cpu']:.2f}x, "
        f"p50 {sm['cost_ratio_p50']:.2f}x   goal <= {GOAL_FLAT_RATIO}x"
    )
    checked = "none (checked in replies and in the database)"
    print(f"duplicates: {checked if sm['no_duplicates'] else 'FOUND'}")
    print(
        "srv ms / cli ms: CPU milliseconds per request of the coordinator (or floor server) / "
        "of the load processes; cost: match srv ms / bare ASGI srv ms; load: 1-minute load "
        "average after the run"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = arguments(
        __doc__,
        "tiny sizes, for CI",
        "matching",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        profile=True,
    )
    parser.add_argument(
        "--sizes", default="1000,10000,100000,1000000", help="waiting jobs, comma-separated"
    )
    parser.add_argument("--reference", type=int, default=100_000, help="size swept over --pilots")
    parser.add_argument("--pilots", default="1,10,50,200", help="concurrent pilots at --reference")
    parser.add_argument(
        "--scale-pilots", type=int, default=10, help="concurrent pilots at every size"
    )
    parser.add_argument("--requests", type=int, default=3000, help="match requests per run")
    parser.add_argument(
        "--jobs-per-match",
        default="1",
        help="jobs asked per match request (n), comma-separated: each is a run per --pilots",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.reference, args.pilots, args.requests = "200,2000", 2000, "1,4", 100
        args.scale_pilots = 4
    return args


def runs_for(size: int, args: argparse.Namespace) -> list[tuple[int, int, int]]:
    """``(pilots, requests, jobs per match)`` of each run at ``size``. Never drain a size:
    a run that ran out of jobs would time empty answers."""
    ks = [int(k) for k in args.jobs_per_match.split(",")]
    runs = [(args.scale_pilots, min(args.requests, int(size * 0.2)), 1)]
    if size == args.reference:
        pilots = [int(p) for p in args.pilots.split(",")]
        runs = [(p, 0, k) for k in ks for p in pilots] or runs
        if (args.scale_pilots, 0, 1) not in runs:
            runs.insert(0, (args.scale_pilots, 0, 1))
        budget = int(size * 0.4) // max(1, sum(k for _p, _n, k in runs))
        runs = [(p, min(args.requests, budget), k) for p, _n, k in runs]
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-matching-") as tmp:
        floor = http_floor.start("asgi", Path(tmp))
        try:
            measured = [
                bench_size(Path(tmp), size, runs_for(size, args), floor, args.profile)
                for size in (int(s) for s in args.sizes.split(","))
            ]
        finally:
            stop(floor[0])
    result = {
        "benchmark": "matching",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": httpload.machine(),
        "command": " ".join(
            ["python -m bench.matching", *(argv if argv is not None else sys.argv[1:])]
        ),
        "reference": args.reference,
        "goals": {
            "matches_per_s": GOAL_MATCHES_PER_S,
            "p99_ms": GOAL_P99_MS,
            "flat_ratio": GOAL_FLAT_RATIO,
        },
        "sizes": measured,
        "summary": summary(measured, args.reference, args.scale_pilots),
    }
    print_summary(result)
    write_result(args.output, result)
    return 0 if result["summary"]["no_duplicates"] else 1


if __name__ == "__main__":
    sys.exit(main())
