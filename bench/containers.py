"""Container overhead: ms per start of a short payload, plain vs bubblewrap vs Apptainer.

    .venv/bin/python -m bench.containers --repeat 50

Each short payload (``/bin/true``, ``sh -c 'echo hi'``) is started and waited for in these
ways, interleaved (one of each in turn, ``--repeat`` rounds):

- ``fork+exec``: ``subprocess.Popen`` of the payload with its output to files, then a
  blocking wait: the floor any way of running a process pays;
- ``plain runtime``: ``wrapper.plain.PlainRuntime`` start, ``wait``, ``finish`` (what a job's
  payload goes through);
- ``plain job``: one whole job through ``wrapper.job.JobRun`` (work dir, environment,
  runtime choice, supervision, outcome), no sandboxes;
- ``bwrap raw``: the very command line ``wrapper.bubblewrap.build_command`` makes, run
  directly with a blocking wait: bubblewrap's own cost;
- ``bwrap runtime`` and ``bwrap job``: as the plain ones, under ``BubblewrapRuntime``;
- Apptainer: measured the same way when ``apptainer`` is installed, otherwise reported as
  not present.

The bubblewrap image is a static busybox directory (``tests/wrapper/rootfs.py``). Prints a
table (median and p90 in ms, ratio to fork+exec of the same payload) and writes
``bench/results/containers.json``. ``--smoke`` runs 3 rounds.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import psutil

from bench.harness import arguments, write_result
from protocol import JobAssignment, JobStatus
from tests.wrapper.rootfs import build_rootfs
from wrapper.bubblewrap import BubblewrapRuntime, build_command
from wrapper.container import container_env, payload_argv
from wrapper.job import ContainerSettings, JobRun, WrapperConfig
from wrapper.plain import PlainRuntime
from wrapper.runtime import ContainerRuntime, RunSpec

PAYLOADS = {"true": ["/bin/true"], "echo": ["sh", "-c", "echo hi"]}
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}
KILL_GRACE_S = 0.5
Start = Callable[[Path], None]
"""Runs one payload to its end in a fresh work dir (raises if it did not succeed)."""


class NoSandboxes:
    """The job has no sandboxes, so the wrapper never calls its transport."""

    def download_sandbox(self, sha256: str, dest: Path) -> None:
        raise RuntimeError("no input sandbox expected")

    def upload_sandbox(self, path: Path, sha256: str) -> None:
        raise RuntimeError("no output sandbox expected")


def spec_for(argv: list[str], workdir: Path, image: str = "") -> RunSpec:
    return RunSpec(
        argv=argv,
        cwd=workdir,
        env=ENV,
        stdout_path=workdir / "std.out",
        stderr_path=workdir / "std.err",
        image=image,
    )


def bare(argv: list[str]) -> Start:
    def start(workdir: Path) -> None:
        with open(workdir / "std.out", "wb") as out, open(workdir / "std.err", "wb") as err:
            code = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=ENV)
        if code.returncode != 0:
            raise RuntimeError(f"{argv} exited {code.returncode}")

    return start


def bwrap_raw(argv: list[str], image: Path) -> Start:
    """bwrap with the arguments our runtime builds (status fd included), nothing else."""
    binary = shutil.which("bwrap") or "bwrap"

    def start(workdir: Path) -> None:
        spec = spec_for(argv, workdir, str(image))
        inside = payload_argv(argv, workdir)
        with tempfile.TemporaryFile() as status:
            command = build_command(binary, spec, image, [], inside, status.fileno())
            env = container_env(spec.env, workdir)
            with open(spec.stdout_path, "wb") as out, open(spec.stderr_path, "wb") as err:
                done = subprocess.run(
                    command,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    pass_fds=(status.fileno(),),
                )
        if done.returncode != 0:
            raise RuntimeError(f"bwrap exited {done.returncode}: {spec.stderr_path.read_text()}")

    return start


def through_runtime(runtime: ContainerRuntime, argv: list[str], image: str = "") -> Start:
    def start(workdir: Path) -> None:
        payload = runtime.start(spec_for(argv, workdir, image))
        payload.wait()
        result = payload.finish(KILL_GRACE_S)
        if result.exit_code != 0 or result.infrastructure_error:
            raise RuntimeError(f"{runtime.name}: {result}")

    return start


def through_job(argv: list[str], image: str, runtimes: tuple[str, ...]) -> Start:
    # The bench's image is a temporary directory: the site's list of allowed image
    # locations (wrapper/images.py) names it, as a site names its /cvmfs repositories.
    allowed = (str(Path(image).parent),) if image else ()
    config = WrapperConfig(
        allow_plain=not image,
        containers=ContainerSettings(runtimes=runtimes, allowed_images=allowed),
        kill_grace_s=0.5,
    )
    job = JobAssignment(job_id=1, executable=argv[0], arguments=argv[1:], container=image)

    def start(workdir: Path) -> None:
        outcome = JobRun(job, workdir, NoSandboxes(), config).run()
        if outcome.status != JobStatus.DONE:
            raise RuntimeError(f"job ended {outcome.status.value}: {outcome.minor_status}")

    return start


def apptainer_binary() -> str:
    return shutil.which("apptainer") or shutil.which("singularity") or ""


def variants(image: Path) -> dict[tuple[str, str], Start]:
    """Every (way, payload) to time; Apptainer's only when it is installed."""
    found: dict[tuple[str, str], Start] = {}
    for name, argv in PAYLOADS.items():
        found[("fork+exec", name)] = bare(argv)
        found[("plain runtime", name)] = through_runtime(PlainRuntime(), argv)
        found[("plain job", name)] = through_job(argv, "", ())
        found[("bwrap raw", name)] = bwrap_raw(argv, image)
        found[("bwrap runtime", name)] = through_runtime(BubblewrapRuntime(), argv, str(image))
        found[("bwrap job", name)] = through_job(argv, str(image), ("bwrap",))
        if apptainer_binary():
            from wrapper.apptainer import ApptainerRuntime

            found[("apptainer runtime", name)] = through_runtime(
                ApptainerRuntime(), argv, str(image)
            )
    return found


def time_rounds(starts: dict[tuple[str, str], Start], base: Path, rounds: int) -> dict[Any, Any]:
    """Milliseconds per start, one of each variant in turn so drift hits all alike."""
    times_ms: dict[tuple[str, str], list[float]] = {key: [] for key in starts}
    for round_number in range(rounds):
        for key, start in starts.items():
            workdir = base / f"job_{round_number}"
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir()
            started = time.perf_counter()
            start(workdir)
            times_ms[key].append((time.perf_counter() - started) * 1000)
        shutil.rmtree(base / f"job_{round_number}", ignore_errors=True)
    return times_ms


def p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


@dataclasses.dataclass(frozen=True)
class Row:
    way: str
    payload: str
    median_ms: float
    p90_ms: float
    ratio_to_fork_exec: float
    added_ms: float
    """Median minus the median of what it wraps (runtime: its raw command; job: runtime)."""


WRAPS = {
    "plain runtime": "fork+exec",
    "plain job": "plain runtime",
    "bwrap raw": "fork+exec",
    "bwrap runtime": "bwrap raw",
    "bwrap job": "bwrap runtime",
    "apptainer runtime": "fork+exec",
}


def rows(times_ms: dict[tuple[str, str], list[float]]) -> list[Row]:
    medians = {key: statistics.median(values) for key, values in times_ms.items()}
    found = []
    for (way, payload), values in times_ms.items():
        median = medians[(way, payload)]
        wrapped = medians.get((WRAPS.get(way, way), payload), median)
        floor = medians[("fork+exec", payload)]
        found.append(
            Row(
                way,
                payload,
                round(median, 2),
                round(p90(values), 2),
                round(median / floor, 2),
                round(median - wrapped, 2),
            )
        )
    return found


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "date": datetime.date.today().isoformat(),
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"{result['rounds']} rounds, interleaved; {result['machine']}")
    print(
        f"{'way':<18} {'payload':<8} {'median ms':>10} {'p90 ms':>8} {'x fork+exec':>12} "
        f"{'added ms':>9}"
    )
    for row in result["rows"]:
        print(
            f"{row['way']:<18} {row['payload']:<8} {row['median_ms']:>10.2f} "
            f"{row['p90_ms']:>8.2f} {row['ratio_to_fork_exec']:>12.2f} {row['added_ms']:>9.2f}"
        )
    print(f"apptainer: {result['apptainer']}")


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], "3 rounds, for CI", "containers")
    parser.add_argument("--repeat", type=int, default=50, help="rounds (default 50)")
    args = parser.parse_args()
    rounds = 3 if args.smoke else args.repeat
    if shutil.which("bwrap") is None:
        raise SystemExit("bwrap is not installed: run tests/setup-system.sh")
    with tempfile.TemporaryDirectory(prefix="gridpilot-containers-") as tmp:
        base = Path(tmp)
        image = build_rootfs(base / "rootfs")
        (base / "jobs").mkdir()
        times_ms = time_rounds(variants(image), base / "jobs", rounds)
    result = {
        "rounds": rounds,
        "machine": machine(),
        "apptainer": apptainer_binary() or "not present",
        "rows": [dataclasses.asdict(row) for row in rows(times_ms)],
    }
    print_table(result)
    write_result(args.output, result)


if __name__ == "__main__":
    main()
