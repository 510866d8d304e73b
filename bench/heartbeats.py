"""Heartbeat load: how many running jobs one coordinator process carries.

    .venv/bin/python -m bench.heartbeats               # 1k .. 100k running jobs
    .venv/bin/python -m bench.heartbeats --smoke       # small levels, for CI

A real pilot sends, every ``heartbeat_interval_s`` (30 s), one
``POST /api/v1/pilots/{id}/heartbeat`` carrying all its running jobs (``pilot/heartbeats.py``
aligns them), over its keep-alive connection: N running jobs of J per pilot mean N / J / 30
requests per second. Before batching it sent one ``POST /api/v1/jobs/{id}/heartbeat`` per job
(N / 30 requests per second); ``--modes`` measures either or both, at the same level in the
same run, so the before/after ratio is not blurred by the shared machine's drift.

The level is ramped: at each level the coordinator is stopped, more jobs are seeded as
Running below HTTP (``bench/seeding.py``: pilots of ``--jobs-per-pilot`` jobs, default 8, a
full 8-core slot of 1-core jobs, registered and matched by the coordinator's own logic; a
pilot the matchmaker gives fewer jobs is topped up by another), the coordinator restarted,
and for ``--duration-s`` every pilot (batched) or job (per-job) heartbeats at its own random
phase, open loop (a request leaves at its time whatever the answers to the earlier ones;
latency counts from that time). Before them, two floors at the same times as the busiest
mode measured: as many ``GET /health`` requests to the coordinator, and the very heartbeat
requests sent to a bare ASGI app under the same uvicorn that reads them and answers ``{}``
(``bench/http_floor.py``); "cost" is a batched heartbeat's coordinator CPU over the bare
app's.

The coordinator runs with ``--heartbeat-timeout-s 3600`` so that jobs seeded at an early
level, silent while later levels are seeded, are not made Stalled by the sweeper.

A mode is no longer measured after its first saturated level, where even the median
request waits over 100 ms (``--keep-going`` runs them all); the ramp stops when every mode
is. Prints a table and writes ``bench/results/heartbeats.json``; the answer is the largest
level whose batched heartbeat p99 stays under 100 ms (goal: 200,000 running jobs, issue 14).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench import http_floor, httpload, seeding
from bench.harness import arguments, start_coordinator, stop, write_result
from protocol import (
    API_PREFIX,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    Heartbeat,
    JobHeartbeat,
    PilotHeartbeat,
)

SERVE_OPTIONS = ("--rate-limit-per-s", "1000000", "--heartbeat-timeout-s", "3600")
GOAL_RUNNING_JOBS = 200_000
GOAL_P99_MS = 100.0
LOAD_PROCESSES = 2
CONNECTIONS_PER_PROCESS = 64
MODES = ("per-job", "batched")
RESULT_KEYS = {"per-job": "heartbeat", "batched": "batched"}
BEAT = Heartbeat(
    cpu_s=12.5, rss_bytes=200_000_000, wall_s=60.0, log_offsets={"stdout": 4096, "stderr": 0}
)


def pilots_for(jobs: int, jobs_per_pilot: int) -> list[int]:
    """Pilots of ``jobs_per_pilot`` jobs (the last one may hold fewer) adding up to ``jobs``."""
    full, rest = divmod(jobs, jobs_per_pilot)
    return [jobs_per_pilot] * full + ([rest] if rest else [])


def add_running(data_dir: Path, jobs: int, jobs_per_pilot: int) -> list[tuple[str, list[int]]]:
    """``jobs`` more Running jobs, held by new pilots (each fits 5 of the 50 groups, so
    spare Waiting jobs are seeded, and a pilot that finds too few is topped up)."""
    held: list[tuple[str, list[int]]] = []
    missing = jobs
    while missing > 0:
        seeding.seed_waiting(data_dir, missing + missing // 2 + 100)
        got = seeding.seed_running(data_dir, pilots_for(missing, jobs_per_pilot))
        held += [(pilot_id, job_ids) for pilot_id, job_ids in got if job_ids]
        missing -= sum(len(job_ids) for _, job_ids in got)
    return held


def pilot_headers(token: str, pilot_id: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        PROTOCOL_HEADER: str(PROTOCOL_VERSION),
        "X-Gridpilot-Pilot": pilot_id,
        "Content-Type": "application/json",
    }


def every_interval(
    request: httpload.Request, interval_s: float, duration_s: float, rng: random.Random
) -> list[tuple[float, httpload.Request]]:
    """``request`` once per interval in ``[0, duration_s)``, at a random phase."""
    at, times = rng.uniform(0, interval_s), []
    while at < duration_s:
        times.append((at, request))
        at += interval_s
    return times


def heartbeat_requests(
    held: list[tuple[str, list[int]]], token: str, *, batched: bool
) -> list[httpload.Request]:
    """What the held jobs' pilots send each interval: one heartbeat per pilot carrying all
    its jobs (now), or, before batching, one per job."""
    requests = []
    for pilot_id, job_ids in held:
        headers = pilot_headers(token, pilot_id)
        if batched:
            body = PilotHeartbeat([JobHeartbeat(job_id, BEAT) for job_id in job_ids]).to_dict()
            path = f"{API_PREFIX}/pilots/{pilot_id}/heartbeat"
            requests.append(httpload.Request("POST", path, headers, body))
        else:
            requests += [
                httpload.Request(
                    "POST", f"{API_PREFIX}/jobs/{job_id}/heartbeat", headers, BEAT.to_dict()
                )
                for job_id in job_ids
            ]
    return requests


def heartbeat_schedule(
    held: list[tuple[str, list[int]]],
    token: str,
    interval_s: float,
    duration_s: float,
    rng: random.Random,
    *,
    batched: bool,
) -> list[tuple[float, httpload.Request]]:
    """Every request of :func:`heartbeat_requests` once per interval, each at its own phase."""
    schedule = []
    for request in heartbeat_requests(held, token, batched=batched):
        schedule += every_interval(request, interval_s, duration_s, rng)
    schedule.sort(key=lambda item: item[0])
    return schedule


def health_schedule(
    like: list[tuple[float, httpload.Request]],
) -> list[tuple[float, httpload.Request]]:
    return [(at, httpload.Request("GET", "/health", {})) for at, _ in like]


def run_open(
    server: subprocess.Popen[bytes],
    url: str,
    schedule: list[tuple[float, httpload.Request]],
    duration_s: float,
    jobs_per_request: float = 1.0,
) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    plans = [
        httpload.OpenLoop(host, int(port), CONNECTIONS_PER_PROCESS, schedule[p::LOAD_PROCESSES])
        for p in range(LOAD_PROCESSES)
    ]
    proc = psutil.Process(server.pid)
    before: list[float] = []
    reports = httpload.open_loop(
        plans, 1.0, on_start=lambda: before.append(sum(proc.cpu_times()[:2]))
    )
    server_cpu_s = sum(proc.cpu_times()[:2]) - before[0]
    samples = [s for r in reports for s in r.samples]
    latencies = [s.latency_s for s in samples]
    wall_s = max(r.finished_s for r in reports) - min(r.started_s for r in reports)
    return {
        "requests": len(samples),
        "errors": sum(1 for s in samples if s.status != 200),
        "rate_per_s": len(samples) / duration_s,
        "p50_ms": 1000 * httpload.percentile(latencies, 0.50),
        "p99_ms": 1000 * httpload.percentile(latencies, 0.99),
        "server_cpu_pct": 100 * server_cpu_s / wall_s,
        "server_cpu_ms": 1000 * server_cpu_s / max(1, len(samples)),
        "jobs_per_s": jobs_per_request * len(samples) / duration_s,
        "server_cpu_ms_per_job": 1000 * server_cpu_s / max(1.0, jobs_per_request * len(samples)),
        "client_cpu_pct": 100 * sum(r.cpu_s for r in reports) / wall_s,
    }


def show(level: dict[str, Any], mode: str) -> None:
    b, h, a = level[RESULT_KEYS[mode]], level["health"], level["asgi"]
    floor_cpu_s = a["server_cpu_ms"] * a["requests"] / 1000
    cost = f"{b['server_cpu_ms'] / a['server_cpu_ms']:>5.1f}x" if floor_cpu_s >= 0.05 else "    -"
    cells = [
        f"{mode:>8}",
        f"{level['running_jobs']:>9,}",
        f"{level['pilots']:>7,}",
        f"{b['rate_per_s']:>7.0f}",
        f"{b['jobs_per_s']:>7.0f}",
        f"{b['p50_ms']:>7.1f}",
        f"{b['p99_ms']:>8.1f}",
        f"{b['errors']:>6}",
        f"{b['server_cpu_pct']:>6.0f}%",
        f"{b['server_cpu_ms']:>7.2f}",
        f"{b['server_cpu_ms_per_job']:>7.2f}",
        f"{b['client_cpu_pct']:>6.0f}%  ",
        f"{h['p50_ms']:>6.1f}",
        f"{h['p99_ms']:>7.1f}",
        f"{h['server_cpu_ms']:>7.2f}  ",
        f"{a['p99_ms']:>6.1f}",
        f"{a['server_cpu_ms']:>6.2f}",
        cost,
        f"{level['load_average_1m'][-1]:>5.1f}",
    ]
    print(" ".join(cells), flush=True)


HEADER = (
    f"{'mode':>8} {'running':>9} {'pilots':>7} {'req/s':>7} {'jobs/s':>7} {'p50 ms':>7} "
    f"{'p99 ms':>8} {'errors':>6} {'srv cpu':>7} {'ms/req':>7} {'ms/job':>7} {'cli cpu':>7}   "
    f"{'health':>6} {'p99':>7} {'srv ms':>7}   {'asgi p99':>6} {'srv ms':>6} {'cost':>5} "
    f"{'load':>5}"
)


def measure_level(
    data_dir: Path,
    held: list[tuple[str, list[int]]],
    modes: list[str],
    args: argparse.Namespace,
    floor: tuple[subprocess.Popen[bytes], str],
    rng: random.Random,
) -> dict[str, Any]:
    """The floors, then each mode, against one freshly started coordinator."""
    interval_s, duration_s = args.interval_s, args.duration_s
    running = sum(len(jobs) for _, jobs in held)
    result: dict[str, Any] = {"running_jobs": running, "pilots": len(held)}
    profile = None if args.profile is None else args.profile / f"heartbeats-{running}.raw"
    server, url, token = start_coordinator(data_dir, *SERVE_OPTIONS, profile=profile)
    result["load_average_1m"] = [httpload.load_average()[0]]
    try:
        beats = heartbeat_schedule(held, token, interval_s, duration_s, rng, batched=False)
        batches = heartbeat_schedule(held, token, interval_s, duration_s, rng, batched=True)
        # The floor at the rate of the busiest mode measured: a floor at the per-job rate
        # once that saturates the server would only leave a backlog for the batched run.
        busiest = beats if "per-job" in modes else batches
        result["health"] = run_open(server, url, health_schedule(busiest), duration_s)
        result["asgi"] = run_open(*floor, busiest, duration_s)
        if "per-job" in modes:
            result["heartbeat"] = run_open(server, url, beats, duration_s)
        if "batched" in modes:
            per_request = running / max(1, len(held))
            result["batched"] = run_open(server, url, batches, duration_s, per_request)
    finally:
        stop(server)
    result["load_average_1m"].append(httpload.load_average()[0])
    return result


def ramp(base: Path, levels: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Measure each level in turn; a mode is dropped after the first level it saturates."""
    data_dir = base / "running"
    floor = http_floor.start("asgi", base)
    try:
        return _ramp(data_dir, floor, levels, args)
    finally:
        stop(floor[0])


def _ramp(
    data_dir: Path,
    floor: tuple[subprocess.Popen[bytes], str],
    levels: list[int],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    rng = random.Random(7)
    held: list[tuple[str, list[int]]] = []
    measured = []
    modes = list(args.modes)
    for level in levels:
        started = time.perf_counter()
        held += add_running(
            data_dir, level - sum(len(jobs) for _, jobs in held), args.jobs_per_pilot
        )
        seed_s = time.perf_counter() - started
        result = measure_level(data_dir, held, modes, args, floor, rng)
        result["seed_s"] = seed_s
        measured.append(result)
        for mode in list(modes):
            show(result, mode)
            if result[RESULT_KEYS[mode]]["p50_ms"] >= GOAL_P99_MS and not args.keep_going:
                # Saturated (half the requests queue longer than the goal allows): higher
                # levels only queue longer, and an open-loop backlog at several times what
                # the server answers takes minutes to drain.
                modes.remove(mode)
        if not modes:
            break
    return measured


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = arguments(
        __doc__,
        "tiny levels and short runs, for CI",
        "heartbeats",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        profile=True,
    )
    parser.add_argument(
        "--levels",
        default="1000,2000,5000,10000,20000,50000,100000",
        help="running jobs, comma-separated",
    )
    parser.add_argument(
        "--interval-s", type=float, default=30.0, help="heartbeat interval of each job"
    )
    parser.add_argument("--duration-s", type=float, default=20.0, help="load time per level")
    parser.add_argument(
        "--keep-going", action="store_true", help="measure every level, even past the goal's p99"
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help="per-job (one request per job, before batching), batched (one per pilot), or both",
    )
    parser.add_argument(
        "--jobs-per-pilot", type=int, default=8, help="running jobs each pilot holds"
    )
    args = parser.parse_args(argv)
    args.modes = [mode for mode in args.modes.split(",") if mode]
    if not args.modes or set(args.modes) - set(MODES):
        parser.error(f"--modes: a comma-separated subset of {', '.join(MODES)}")
    if args.smoke:
        args.levels, args.interval_s, args.duration_s = "100,300", 3.0, 3.0
        args.keep_going = True
    return args


def print_summary(result: dict[str, Any]) -> None:
    print()
    print(
        f"largest level with {result['goal_mode']} heartbeat p99 < {GOAL_P99_MS:.0f} ms and "
        f"no errors: {result['largest_level_under_goal_p99']:,} running jobs   "
        f"goal {GOAL_RUNNING_JOBS:,}"
    )
    print(
        "srv cpu / cli cpu: coordinator / load processes CPU as % of one core; ms/req, ms/job: "
        "coordinator CPU ms per request, per job heartbeat; health: the GET /health floor; "
        "asgi: the same heartbeats to a bare ASGI app; cost: ms/req over the bare app's; "
        "load: 1-minute load average after the level"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    levels = [int(level) for level in args.levels.split(",")]
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-heartbeats-") as tmp:
        measured = ramp(Path(tmp), levels, args)
    goal_mode = "batched" if "batched" in args.modes else "per-job"
    key = RESULT_KEYS[goal_mode]
    carried = [
        m["running_jobs"]
        for m in measured
        if key in m and m[key]["p99_ms"] < GOAL_P99_MS and not m[key]["errors"]
    ]
    result = {
        "benchmark": "heartbeats",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": httpload.machine(),
        "command": " ".join(
            ["python -m bench.heartbeats", *(argv if argv is not None else sys.argv[1:])]
        ),
        "interval_s": args.interval_s,
        "duration_s": args.duration_s,
        "jobs_per_pilot": args.jobs_per_pilot,
        "modes": args.modes,
        "goal_mode": goal_mode,
        "goals": {"running_jobs": GOAL_RUNNING_JOBS, "p99_ms": GOAL_P99_MS},
        "levels": measured,
        "largest_level_under_goal_p99": max(carried, default=0),
    }
    print_summary(result)
    write_result(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
