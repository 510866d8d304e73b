"""What the chaos tests share: a coordinator they can SIGKILL and bring back on the same
port and data dir, real pilot processes, and jobs that keep a ledger of every execution.

Every job runs ``payload.sh``: it appends ``start <job> <pid> <time>`` to a ledger outside
any work dir, writes a known number of known lines to its stdout, sleeps, writes
``out.txt``, and appends ``end <job> <pid> <time>``. From the ledger a test tells a job that
never ran, ran twice, or ran two copies at once; from the coordinator it reads back each
job's stored stdout and its output sandbox and compares them byte for byte.

Sizes are small enough for CI; ``GRIDPILOT_CHAOS_JOBS`` (and ``GRIDPILOT_CHAOS_KILLS``)
run the same tests bigger.
"""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

import pytest
import requests

from protocol import Role
from tests.conftest import RunningCoordinator, launch_coordinator
from tests.integration.conftest import Pilot

CHAOS_JOBS = int(os.environ.get("GRIDPILOT_CHAOS_JOBS", "40"))
CHAOS_KILLS = int(os.environ.get("GRIDPILOT_CHAOS_KILLS", "3"))
FINAL = {"Done", "Failed", "Killed"}
PAYLOAD = """#!/bin/sh
ledger=$1; lines=$2; pause=$3
echo "start $GRIDPILOT_JOB_ID $$ $(date +%s.%N)" >> "$ledger"
i=0
while [ $i -lt "$lines" ]; do
    echo "job $GRIDPILOT_JOB_ID line $i of a chatty payload"
    i=$((i+1))
done
echo "output of job $GRIDPILOT_JOB_ID" > out.txt
sleep "$pause"
echo "end $GRIDPILOT_JOB_ID $$ $(date +%s.%N)" >> "$ledger"
"""


def expected_stdout(job_id: int, lines: int) -> bytes:
    return b"".join(f"job {job_id} line {i} of a chatty payload\n".encode() for i in range(lines))


@dataclasses.dataclass
class Execution:
    job_id: int
    pid: int
    started_at: float
    ended_at: Optional[float] = None


class Coordinator:
    """A coordinator process that can be SIGKILLed and started again where it was."""

    def __init__(self, data_dir: Path, **flags: Any) -> None:
        self.data_dir = data_dir
        self.flags = flags
        self.running: Optional[RunningCoordinator] = launch_coordinator(data_dir, **flags)
        self.port = int(self.running.url.rsplit(":", 1)[1])
        self.url = self.running.url
        self.kills = 0

    @property
    def current(self) -> RunningCoordinator:
        assert self.running is not None, "the coordinator is down"
        return self.running

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; whatever was in flight is lost."""
        running, self.running = self.current, None
        running.process.send_signal(signal.SIGKILL)
        running.process.wait(timeout=10)
        self.kills += 1

    def restart(self) -> None:
        self.running = launch_coordinator(self.data_dir, port=self.port, **self.flags)

    def stop(self) -> None:
        if self.running is not None:
            self.running.process.terminate()
            try:
                self.running.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.running.process.kill()
                self.running.process.wait(timeout=10)
            self.running = None

    def token(self, role: str, subject: str) -> str:
        return self.current.token(role=role, subject=subject, vo="vo1")


class ChaosRun:
    """One test's coordinator, user, pilots and ledger."""

    def __init__(self, root: Path, coordinator: Coordinator) -> None:
        self.root = root
        self.coordinator = coordinator
        self.ledger = root / "ledger"
        self.ledger.touch()
        self.script = root / "payload.sh"
        self.script.write_text(PAYLOAD)
        self.user_token = coordinator.token("user", "alice")
        self.pilot_token = coordinator.token(Role.PILOT.value, "factory")
        self.pilots: list[subprocess.Popen[str]] = []
        self.lines = 0

    def headers(self) -> dict[str, str]:
        return self.coordinator.current.headers(self.user_token)

    def api(self, path: str) -> str:
        return self.coordinator.current.api(path)

    def submit(self, count: int, lines: int, pause_s: float) -> list[int]:
        self.lines = lines
        jdl = f"""
            Executable = "/bin/sh";
            Arguments = "{self.script} {self.ledger} {lines} {pause_s}";
            StdOutput = "std.out";
            StdError = "std.err";
            OutputSandbox = {{"out.txt", "std.out"}};
            Parameters = {count};
        """
        reply = requests.post(
            self.api("/jobs"),
            json={"description": jdl, "format": "jdl"},
            headers=self.headers(),
            timeout=60,
        )
        assert reply.status_code == 201, reply.text
        job_ids: list[int] = reply.json()["job_ids"]
        return job_ids

    def pilot(self, name: str, url: Optional[str] = None) -> Pilot:
        root = self.root / name
        root.mkdir(exist_ok=True)
        return Pilot(url or self.coordinator.url, self.pilot_token, root)

    def start_pilot(
        self,
        pilot: Pilot,
        *,
        idle_timeout_s: float = 6.0,
        cores: int = 2,
        extra: Sequence[str] = (),
        env: Optional[dict[str, str]] = None,
    ) -> subprocess.Popen[str]:
        process = pilot.start(
            idle_timeout_s, extra=["--cores", str(cores), *extra], env={**(env or {})}
        )
        self.pilots.append(process)
        return process

    def jobs(self, job_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        reply = requests.get(
            self.api("/jobs"),
            params={"ids": ",".join(map(str, job_ids)), "limit": len(job_ids)},
            headers=self.headers(),
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        return {job["job_id"]: job for job in reply.json()["jobs"]}

    def wait_final(self, job_ids: Sequence[int], timeout_s: float) -> dict[int, dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                jobs = self.jobs(job_ids)
            except requests.ConnectionError:
                jobs = {}  # the coordinator is being restarted
            if jobs and all(job["status"] in FINAL for job in jobs.values()):
                return jobs
            if time.monotonic() > deadline:
                statuses = sorted({job["status"] for job in jobs.values()})
                raise AssertionError(f"jobs not final after {timeout_s} s: {statuses}")
            time.sleep(0.5)

    def executions(self) -> list[Execution]:
        """Every start in the ledger, with its end when it reached one."""
        runs: dict[tuple[int, int], Execution] = {}
        for line in self.ledger.read_text().splitlines():
            kind, job_id, pid, at = line.split()
            key = (int(job_id), int(pid))
            if kind == "start":
                runs[key] = Execution(int(job_id), int(pid), float(at))
            else:
                runs[key].ended_at = float(at)
        return list(runs.values())

    def stored_log(self, job_id: int, stream: str = "stdout") -> bytes:
        reply = requests.get(
            self.api(f"/jobs/{job_id}/logs/{stream}"),
            params={"limit": 16 * 1024 * 1024},
            headers=self.headers(),
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        return reply.content

    def output_files(self, job: dict[str, Any]) -> dict[str, bytes]:
        digest = job["output_sandbox"]
        assert digest, f"job {job['job_id']} has no output sandbox"
        reply = requests.get(self.api(f"/sandboxes/{digest}"), headers=self.headers(), timeout=60)
        assert reply.status_code == 200, reply.text
        files = {}
        with tarfile.open(fileobj=io.BytesIO(reply.content), mode="r:gz") as tar:
            for member in tar:
                source = tar.extractfile(member)
                if source is not None:
                    files[member.name] = source.read()
        return files

    def check_exactly_once_and_byte_exact(
        self, job_ids: Sequence[int], timeout_s: float, *, interrupted: int = 0
    ) -> None:
        """Every job Done, run to its end once, its stored stdout and output sandbox byte
        for byte what it wrote. ``interrupted``: how many copies per job may have started
        and been killed before the end (their pilot was), none otherwise."""
        jobs = self.wait_final(job_ids, timeout_s)
        statuses = {job_id: job["status"] for job_id, job in jobs.items()}
        assert set(statuses.values()) == {"Done"}, statuses
        executions = self.executions()
        per_job = {job_id: [e for e in executions if e.job_id == job_id] for job_id in job_ids}
        for job_id, runs in per_job.items():
            ended = [run for run in runs if run.ended_at is not None]
            assert len(ended) == 1, f"job {job_id} ran to its end {len(ended)} times: {runs}"
            assert len(runs) - 1 <= interrupted, f"job {job_id} started {len(runs)} times"
        for job_id in job_ids:
            expected = expected_stdout(job_id, self.lines)
            assert self.stored_log(job_id) == expected, f"job {job_id}: stored stdout differs"
            files = self.output_files(jobs[job_id])
            assert files["std.out"] == expected, f"job {job_id}: std.out differs"
            assert files["out.txt"] == f"output of job {job_id}\n".encode()

    def wait_pilots(self, timeout_s: float) -> list[int]:
        codes = []
        for process in self.pilots:
            try:
                process.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate(timeout=10)
            codes.append(process.returncode)
        return codes

    def close(self) -> None:
        for process in self.pilots:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)


@pytest.fixture
def chaos(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ChaosRun]:
    flags: dict[str, Any] = getattr(request, "param", {})
    coordinator = Coordinator(tmp_path / "coordinator", match_retry_after_s=0.5, **flags)
    run = ChaosRun(tmp_path, coordinator)
    try:
        yield run
    finally:
        run.close()
        coordinator.stop()
