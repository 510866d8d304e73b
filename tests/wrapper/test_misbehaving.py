"""Real misbehaving payloads through JobRun: each is stopped by its limit, nothing survives.

Numbers are small (100 MB of memory, 200 sleepers, a 20 MB disk quota) so the suite stays
fast and the machine safe; every payload also has a wall limit far above what the test needs,
so a broken watchdog fails the test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from protocol import JobStatus
from tests.wrapper.conftest import DirectoryTransport, assignment
from wrapper.job import JobOutcome, JobRun, WrapperConfig
from wrapper.usage import marked_processes
from wrapper.watchdog import WatchdogPolicy

MIB = 1024**2
REPO = Path(__file__).resolve().parents[2]

POLICY = WatchdogPolicy(
    watchdog_interval_s=0.1,
    full_scan_interval_s=0.2,
    wall_time_factor=1.0,
    cpu_time_factor=1.0,
    time_limit_margin_s=0.0,
    max_stdio_bytes=0,
    max_processes=0,
    stalled_after_s=0,
)
CONFIG = WrapperConfig(kill_grace_s=0.5, upload_backoff_s=0.01, watchdog=POLICY)
SAFETY_WALL_S = 60


def run(
    tmp_path: Path,
    script: str,
    *,
    shell: bool = False,
    config: WrapperConfig = CONFIG,
    **fields: object,
) -> JobOutcome:
    """Run ``script`` (Python, or sh with ``shell``) as job 7 in ``tmp_path/pilot/job_7``."""
    fields.setdefault("wall_time_s", SAFETY_WALL_S)
    program = [sys.executable, "-c"] if not shell else ["/bin/sh", "-c"]
    job = assignment(
        executable=program[0], arguments=[program[1], textwrap.dedent(script)], **fields
    )
    transport = DirectoryTransport(tmp_path / "store")
    return JobRun(job, workdir(tmp_path), transport, config).run()


def workdir(tmp_path: Path) -> Path:
    return tmp_path / "pilot" / "job_7"


def policy(**changes: object) -> WrapperConfig:
    return dataclasses.replace(CONFIG, watchdog=dataclasses.replace(POLICY, **changes))


def survivors(tmp_path: Path) -> list[psutil.Process]:
    """Live processes still carrying this job's work dir in their environment."""
    procs = marked_processes({"GRIDPILOT_WORKDIR": str(workdir(tmp_path))})
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    """Whatever a failing test leaves behind is killed, so it cannot load the machine."""
    yield
    for proc in survivors(tmp_path):
        with contextlib.suppress(psutil.Error):
            proc.kill()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_failed_by(outcome: JobOutcome, pattern: str) -> None:
    assert outcome.status == JobStatus.FAILED, outcome
    assert re.fullmatch(pattern, outcome.minor_status), outcome.minor_status
    assert not outcome.infrastructure_error


def test_memory_hog_over_max_ram_is_failed_with_the_memory_seen(tmp_path: Path) -> None:
    hog = """
        import time
        chunks = []
        for _ in range(40):  # up to 400 MB, 10 MB at a time, each page written
            chunks.append(b"x" * (10 * 1024 * 1024))
            time.sleep(0.02)
        time.sleep(300)
    """
    outcome = run(tmp_path, hog, memory_mb=100)
    assert_failed_by(outcome, r"Memory limit exceeded: \d+\.\d MB > 100\.0 MB")
    assert outcome.application_status == "Killed by signal 15 (SIGTERM)"
    assert outcome.exit_code == 143
    assert outcome.max_rss_bytes > 100 * MIB
    assert outcome.timings_s["payload"] < 30


def test_bounded_fork_bomb_is_killed_completely(tmp_path: Path) -> None:
    bomb = """
        i=0
        while [ $i -lt 200 ]; do sleep 300 & i=$((i + 1)); done
        wait
    """
    outcome = run(tmp_path, bomb, shell=True, config=policy(max_processes=50))
    assert_failed_by(outcome, r"Process limit exceeded: \d+ > 50")
    seen = int(outcome.minor_status.split(": ")[1].split(" > ")[0])
    assert seen > 50
    assert survivors(tmp_path) == []


def test_infinite_loop_is_stopped_at_its_cpu_time(tmp_path: Path) -> None:
    outcome = run(tmp_path, "while True: pass", cpu_time_s=1)
    assert_failed_by(outcome, r"CPU time limit exceeded: \d\.\d s > 1\.0 s")
    assert 1.0 <= outcome.cpu_s < 3.0


def test_sleeper_ignoring_sigterm_gets_sigkill_after_the_grace(tmp_path: Path) -> None:
    started_s = time.monotonic()
    outcome = run(tmp_path, "trap '' TERM; sleep 300", shell=True, wall_time_s=1)
    took_s = time.monotonic() - started_s
    assert_failed_by(outcome, r"Wall time limit exceeded: \d\.\d s > 1\.0 s")
    assert outcome.application_status == "Killed by signal 9 (SIGKILL)"
    assert outcome.exit_code == 137
    # One second of wall time, half a second of grace, then KILL: not the 300 s asked for.
    assert 1.5 <= took_s < 5.0
    assert survivors(tmp_path) == []


ESCAPE = """
    import os, signal, sys, time
    child = os.fork()
    if child == 0:
        os.setsid()  # leave the payload's session and process group
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with open("daemon.pid.tmp", "w") as out:
                out.write(str(os.getpid()))
            os.rename("daemon.pid.tmp", "daemon.pid")
            time.sleep(300)
        os._exit(0)
    os.waitpid(child, 0)  # the daemon is now an orphan, re-parented away from us
    while not os.path.exists("daemon.pid"):
        time.sleep(0.01)
    time.sleep(float(sys.argv[1]))
"""


def daemon_pid(tmp_path: Path) -> int:
    return int((workdir(tmp_path) / "daemon.pid").read_text())


def test_double_forked_daemon_is_killed_when_the_payload_ends(tmp_path: Path) -> None:
    outcome = _escape(tmp_path, 0)
    assert outcome.status == JobStatus.DONE, outcome
    pid = daemon_pid(tmp_path)
    assert not alive(pid)
    assert survivors(tmp_path) == []


def test_double_forked_daemon_is_killed_with_a_payload_over_its_limit(tmp_path: Path) -> None:
    outcome = _escape(tmp_path, 300, wall_time_s=1)
    assert_failed_by(outcome, r"Wall time limit exceeded: \d\.\d s > 1\.0 s")
    assert not alive(daemon_pid(tmp_path))
    assert survivors(tmp_path) == []


def _escape(tmp_path: Path, linger_s: float, **fields: object) -> JobOutcome:
    fields.setdefault("wall_time_s", SAFETY_WALL_S)
    job = assignment(
        executable=sys.executable,
        arguments=["-c", textwrap.dedent(ESCAPE), str(linger_s)],
        **fields,
    )
    return JobRun(job, workdir(tmp_path), DirectoryTransport(tmp_path / "store"), CONFIG).run()


def test_payload_filling_the_work_dir_is_stopped_at_its_quota(tmp_path: Path) -> None:
    filler = """
        import time
        with open("big.dat", "wb") as out:
            while True:
                out.write(b"x" * (1024 * 1024))
                out.flush()
                time.sleep(0.005)
    """
    outcome = run(tmp_path, filler, config=policy(max_workdir_bytes=20 * MIB))
    assert_failed_by(outcome, r"Work dir size limit exceeded: \d+\.\d MB > 20\.0 MB")
    # Stopped soon after the quota, not when the disk was full.
    assert (workdir(tmp_path) / "big.dat").stat().st_size < 200 * MIB


def test_payload_flooding_stdout_is_stopped_at_the_output_limit(tmp_path: Path) -> None:
    flood = """
        import sys, time
        block = b"y" * (1024 * 1024)
        for _ in range(1024):  # 1 GB, at most about 200 MB/s
            sys.stdout.buffer.write(block)
            sys.stdout.flush()
            time.sleep(0.005)
    """
    outcome = run(tmp_path, flood, config=policy(max_stdio_bytes=64 * MIB))
    assert_failed_by(outcome, r"Output size limit exceeded: \d+\.\d MB > 64\.0 MB")
    assert (workdir(tmp_path) / "std.out").stat().st_size < 512 * MIB


def test_idle_payload_is_failed_as_stalled(tmp_path: Path) -> None:
    outcome = run(tmp_path, "sleep 300", shell=True, config=policy(stalled_after_s=1.0))
    assert_failed_by(outcome, r"Job stalled: no CPU progress for \d\.\d s \(limit 1\.0 s\)")


def test_busy_payload_within_its_limits_is_done(tmp_path: Path) -> None:
    busy = """
        import time
        end = time.time() + 1.5
        data = b"x" * (20 * 1024 * 1024)
        while time.time() < end:
            sum(range(10000))
    """
    config = policy(stalled_after_s=1.0, max_processes=10, max_workdir_bytes=10 * MIB)
    outcome = run(tmp_path, busy, config=config, memory_mb=200, cpu_time_s=30, wall_time_s=30)
    assert outcome.status == JobStatus.DONE, outcome
    assert outcome.minor_status == "Execution Complete"


WRAPPER_SCRIPT = """
import sys
from pathlib import Path
from tests.wrapper.conftest import DirectoryTransport, assignment
from wrapper.job import JobRun, WrapperConfig

base = Path(sys.argv[1])
job = assignment(
    executable="/bin/sh",
    arguments=["-c", "head -c 1073741824 /dev/zero; echo done >&2"],
    output_sandbox=["std.out", "std.err"],
)
config = WrapperConfig(max_output_sandbox_bytes=100 * 1024 * 1024)
outcome = JobRun(job, base / "job_7", DirectoryTransport(base / "store"), config).run()
print(outcome.status.value, outcome.minor_status, sep="|")
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so it would report the
# (large) pytest process that started this one.
peak_kb = next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(int(peak_kb) * 1024)
"""


@pytest.mark.slow
def test_one_gigabyte_of_stdout_keeps_the_wrapper_small(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER_SCRIPT, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    status_line, rss_line = result.stdout.strip().splitlines()[-2:]
    assert (tmp_path / "job_7" / "std.out").stat().st_size == 1024**3
    status, minor = status_line.split("|")
    assert status == "Done"
    assert minor == "Output Sandbox Over Limit: std.out left out"
    # The payload's 1 GB went to a file: the wrapper process stayed small.
    assert int(rss_line) < 150 * MIB
