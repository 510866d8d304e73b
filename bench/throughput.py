"""Job throughput: N trivial jobs through gridpilot, through a local Slurm, and bare fork+exec.

    .venv/bin/python -m bench.throughput --jobs 1000 10000

For each N, in the same run:

1. ``floor``: N bare fork+exec of ``/bin/true`` (``os.posix_spawn`` + ``waitpid``), one at a
   time and two at a time: the physical limit of this machine.
2. ``gridpilot``: a coordinator on 127.0.0.1 (fresh SQLite), N ``/bin/true`` jobs submitted
   in ONE parametric request (``Parameters = N``), run by one pilot filling ``--slots`` cores
   (default 2: this machine's cores) with its default node checks; timed from the submit
   request to the poll (every 0.1 s) that finds all N Done.
3. ``slurm``: the same N jobs as one Slurm job array (``sbatch --array=0-(N-1) --wrap
   /bin/true``, one CPU each) on the local Slurm (``SLURM_CONF``, else
   /tmp/gridpilot-slurm/slurm.conf from tests/slurm/start-slurm.sh); timed from sbatch to the
   poll (every 0.5 s) that finds no task left in squeue. Skipped when no Slurm answers.
   ``--slurm-budget-s T`` stops it after T s (scancel) and rates the tasks finished by then.

Per-job overhead per slot = wall time x slots / N, minus the floor's time per job. Prints a
table and writes ``bench/results/throughput.json`` (``--output`` elsewhere). ``--smoke``: N=20.
``--profile DIR`` records the pilot too (``DIR/pilot-throughput-N.raw`` and its ``.txt``
summary), next to the coordinator's ``DIR/throughput-N.raw``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import psutil
import requests

from bench.harness import arguments, start_coordinator, stop, write_result
from bench.profiles import Profiler
from coordinator.logic.auth import issue_token, load_or_create_signing_key
from protocol import API_PREFIX, Role

TRUE = "/bin/true"
DEFAULT_SLURM_CONF = "/tmp/gridpilot-slurm/slurm.conf"
GOAL_VS_SLURM = 10.0
GOAL_OVERHEAD_MS = 10.0
RUN_TIMEOUT_S = 3600.0


def spawn_true(count: int) -> None:
    for _ in range(count):
        pid = os.posix_spawn(TRUE, [TRUE], {})
        os.waitpid(pid, 0)


def measure_floor(n: int, parallel: int) -> dict[str, Any]:
    """N fork+exec of /bin/true, ``parallel`` at a time (one thread each: posix_spawn and
    waitpid release the GIL)."""
    shares = [n // parallel + (1 if i < n % parallel else 0) for i in range(parallel)]
    threads = [threading.Thread(target=spawn_true, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summary(n, time.perf_counter() - started, parallel)


def summary(n: int, wall_s: float, slots: int, floor_ms: float = 0.0) -> dict[str, Any]:
    per_slot_ms = wall_s * slots / n * 1000
    return {
        "jobs": n,
        "slots": slots,
        "wall_s": round(wall_s, 6),
        "jobs_per_s": round(n / wall_s, 1),
        "ms_per_job_per_slot": round(per_slot_ms, 3),
        "overhead_ms_per_slot": round(per_slot_ms - floor_ms, 3),
    }


def job_counts(url: str, token: str) -> dict[str, int]:
    reply = requests.get(
        f"{url}{API_PREFIX}/jobs",
        params={"limit": 1},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    reply.raise_for_status()
    counts: dict[str, int] = reply.json()["counts"]
    return counts


def wait_all_done(url: str, token: str, n: int) -> float:
    """Poll until N jobs are Done; the time of the first job Done, for the start-up figure."""
    first_done = 0.0
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        counts = job_counts(url, token)
        if counts.get("Done", 0) and not first_done:
            first_done = time.perf_counter()
        if counts.get("Done", 0) == n:
            return first_done
        if counts.get("Failed", 0):
            raise RuntimeError(f"gridpilot jobs failed: {counts}")
        time.sleep(0.1)
    raise RuntimeError(f"gridpilot: not all {n} jobs Done after {RUN_TIMEOUT_S} s")


def start_pilot(base: Path, url: str, pilot_token: str, slots: int) -> subprocess.Popen[bytes]:
    (base / "pilot.token").write_text(pilot_token)
    log = open(base / "pilot.err", "wb")  # noqa: SIM115 - lives as long as the pilot
    return subprocess.Popen(
        [sys.executable, "-m", "pilot", "pilot", "--url", url, "--cores", str(slots),
         "--token-file", str(base / "pilot.token"), "--workdir", str(base / "work"),
         "--idle-timeout-s", "600", "--poll-interval-s", "0.5"],
        stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip


def measure_gridpilot(
    base: Path, n: int, slots: int, floor_ms: float, profile: Optional[Path] = None
) -> dict[str, Any]:
    data_dir = base / "coordinator"
    data_dir.mkdir(parents=True)
    server, url, pilot_token = start_coordinator(data_dir, profile=profile)
    pilot: Optional[subprocess.Popen[bytes]] = None
    pilot_profiler: Optional[Profiler] = None
    try:
        key = load_or_create_signing_key(data_dir)
        user = issue_token(key, subject="bench", vo="bench", role=Role.USER, ttl_s=7200)
        description = {"Executable": TRUE, "Parameters": n}
        started = time.perf_counter()
        reply = requests.post(
            f"{url}{API_PREFIX}/jobs",
            json={"description": json.dumps(description), "format": "json"},
            headers={"Authorization": f"Bearer {user}"},
            timeout=600,
        )
        reply.raise_for_status()
        submitted = time.perf_counter()
        server_cpu_s = cpu_s(psutil.Process(server.pid))
        pilot = start_pilot(base, url, pilot_token, slots)
        pilot_process = psutil.Process(pilot.pid)
        if profile is not None:  # the pilot's per-job path is this bench's other half
            pilot_profiler = Profiler(pilot.pid, profile.with_name(f"pilot-{profile.name}"))
        first_done = wait_all_done(url, user, n)
        ended = time.perf_counter()
        # CPU per job does not drift with the machine's other load the way wall time does.
        pilot_cpu_s = cpu_s(pilot_process, with_children=True)
        server_cpu_s = cpu_s(psutil.Process(server.pid)) - server_cpu_s
    finally:
        if pilot_profiler is not None:
            pilot_profiler.stop()
        if pilot is not None:
            pilot.terminate()
            pilot.wait(timeout=120)
        stop(server)
    result = summary(n, ended - started, slots, floor_ms)
    result["submit_s"] = round(submitted - started, 3)
    result["first_done_s"] = round(first_done - started, 3)
    result["pilot_cpu_ms_per_job"] = round(pilot_cpu_s / n * 1000, 2)
    result["coordinator_cpu_ms_per_job"] = round(server_cpu_s / n * 1000, 2)
    return result


def cpu_s(process: psutil.Process, with_children: bool = False) -> float:
    times = process.cpu_times()
    total = times.user + times.system
    return total + (times.children_user + times.children_system if with_children else 0.0)


def slurm_env() -> Optional[dict[str, str]]:
    """The environment for the local Slurm's commands, or None when no Slurm answers."""
    conf = os.environ.get("SLURM_CONF") or DEFAULT_SLURM_CONF
    if not shutil.which("sbatch") or not Path(conf).exists():
        return None
    env = {**os.environ, "SLURM_CONF": conf}
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=env)
    return env if ping.returncode == 0 and "UP" in ping.stdout else None


def slurm_tasks_left(env: dict[str, str], job_id: str) -> int:
    result = subprocess.run(
        ["squeue", "-h", "-r", "-j", job_id, "-o", "%i"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    # squeue refuses ids it no longer knows: all tasks finished and purged.
    return len(result.stdout.split()) if result.returncode == 0 else 0


def measure_slurm(
    env: dict[str, str], base: Path, n: int, floor_ms: float, budget_s: float
) -> dict[str, Any]:
    """The array until all tasks finished, or for ``budget_s``: then the rate is over the
    tasks finished so far (``finished`` < N) and the rest is cancelled."""
    slots = os.cpu_count() or 1
    started = time.perf_counter()
    submit = subprocess.run(
        ["sbatch", "--parsable", f"--array=0-{n - 1}", "--cpus-per-task=1", "--mem=64",
         "--job-name=bench-throughput", "--output=/dev/null", "--wrap", TRUE],
        capture_output=True, text=True, env=env, cwd=base, check=True, timeout=600,
    )  # fmt: skip
    job_id = submit.stdout.strip().split(";")[0]
    submitted = time.perf_counter()
    first_done = 0.0
    deadline = time.monotonic() + budget_s
    while (left := slurm_tasks_left(env, job_id)) > 0:
        if left < n and not first_done:
            first_done = time.perf_counter()
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], env=env, check=True, timeout=60)
            break
        time.sleep(0.5)
    ended = time.perf_counter()
    # Tasks still running when cancelled count as not finished.
    result = summary(n - left, ended - started, slots, floor_ms)
    result["finished"] = n - left
    result["submit_s"] = round(submitted - started, 3)
    result["first_done_s"] = round((first_done or ended) - started, 3)
    return result


def measure(
    n: int,
    slots: int,
    env: Optional[dict[str, str]],
    slurm_budget_s: float,
    profile: Optional[Path] = None,
) -> dict[str, Any]:
    floor_1 = measure_floor(n, 1)
    floor_2 = measure_floor(n, 2)
    floor_ms = floor_1["ms_per_job_per_slot"]
    with tempfile.TemporaryDirectory(prefix="gridpilot-throughput-") as tmp:
        profile_file = None if profile is None else profile / f"throughput-{n}.raw"
        gridpilot = measure_gridpilot(Path(tmp), n, slots, floor_ms, profile_file)
        slurm = measure_slurm(env, Path(tmp), n, floor_ms, slurm_budget_s) if env else None
    result: dict[str, Any] = {
        "jobs": n,
        "floor_sequential": floor_1,
        "floor_parallel_2": floor_2,
        "gridpilot": gridpilot,
        "slurm": slurm,
        "gridpilot_vs_floor_2": round(gridpilot["jobs_per_s"] / floor_2["jobs_per_s"], 4),
    }
    if slurm:
        result["gridpilot_vs_slurm"] = round(gridpilot["jobs_per_s"] / slurm["jobs_per_s"], 2)
    return result


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"{'N':>7} {'runner':<18} {'slots':>5} {'wall s':>9} {'jobs/s':>9} "
          f"{'ms/job/slot':>11} {'overhead ms':>11} {'first done s':>12}")  # fmt: skip
    for result in results:
        for name in ("floor_sequential", "floor_parallel_2", "gridpilot", "slurm"):
            row = result[name]
            if row is None:
                print(f"{result['jobs']:>7} {name:<18} (no Slurm answering: skipped)")
                continue
            if row["jobs"] < result["jobs"]:
                name += " (partial)"
            print(
                f"{row['jobs']:>7} {name:<18} {row['slots']:>5} {row['wall_s']:>9.3f} "
                f"{row['jobs_per_s']:>9.1f} {row['ms_per_job_per_slot']:>11.2f} "
                f"{row['overhead_ms_per_slot']:>11.2f} {row.get('first_done_s', ''):>12}"
            )
        gp = result["gridpilot"]
        vs_slurm = result.get("gridpilot_vs_slurm")
        print(
            f"{'':>7} gridpilot/slurm = {vs_slurm if vs_slurm is not None else 'n/a'} "
            f"(goal >= {GOAL_VS_SLURM:g}); gridpilot/floor(2) = {result['gridpilot_vs_floor_2']}; "
            f"overhead {gp['overhead_ms_per_slot']:.1f} ms per job per slot "
            f"(goal < {GOAL_OVERHEAD_MS:g}); CPU per job: pilot+payload "
            f"{gp['pilot_cpu_ms_per_job']} ms, coordinator {gp['coordinator_cpu_ms_per_job']} ms"
        )


def main() -> None:
    parser = arguments(
        __doc__.splitlines()[0], "N=20: show the script works", "throughput", profile=True
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000], help="N, one run each")
    parser.add_argument("--slots", type=int, default=2, help="cores the pilot fills")
    parser.add_argument("--no-slurm", action="store_true", help="skip the Slurm runs")
    parser.add_argument(
        "--slurm-budget-s",
        type=float,
        default=RUN_TIMEOUT_S,
        help="stop the Slurm array after this long; its rate is then over the tasks finished",
    )
    args = parser.parse_args()
    sizes = [20] if args.smoke else args.jobs
    env = None if args.no_slurm else slurm_env()
    load_before = os.getloadavg()[0]
    results = [measure(n, args.slots, env, args.slurm_budget_s, args.profile) for n in sizes]
    print_table(results)
    load = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(f"load average (1 minute) before and after: {load[0]} / {load[1]}")
    document = {"machine": {"cores": os.cpu_count(), "load_average_1m": load}, "results": results}
    write_result(args.output, document)


if __name__ == "__main__":
    main()
