"""The EGI Workload Manager tutorial, done as a user does it: CLI, real coordinator, real pilot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from tests.integration.conftest import TUTORIAL_JDL, Pilot, User

TERMINAL = {"Done", "Failed", "Killed"}


def test_tutorial_round_trip(user: User, pilot: Pilot) -> None:
    (job_id,) = user.submit(TUTORIAL_JDL)
    line = user.run("status", str(job_id)).stdout.strip()
    assert line.startswith(f"JobID={job_id} Status=Waiting; MinorStatus=")
    assert line.endswith("Site=ANY;")

    finished = pilot.run(idle_timeout_s=2)
    assert finished.returncode == 0, finished.stderr

    info = user.status(job_id)
    assert info["status"] == "Done"
    assert info["exit_code"] == 0
    history = user.run("logging-info", str(job_id)).stdout
    seen = [row.split()[0] for row in history.splitlines()[1:]]
    assert seen[0] == "Received"
    for status in ("Waiting", "Matched", "Running", "Done"):
        assert status in seen, history
    assert seen.index("Matched") < seen.index("Running") < seen.index("Done")

    out = user.run("get-output", str(job_id), "--dir", "outputs").stdout
    target = user.cwd / "outputs" / str(job_id)
    assert str(target) in out
    assert sorted(p.name for p in target.iterdir()) == ["StdErr", "StdOut"]
    assert (target / "StdOut").read_text().startswith("total ")


def test_input_sandbox_script_runs_and_its_output_comes_back(user: User, pilot: Pilot) -> None:
    """The tutorial's second example: a script shipped in the input sandbox."""
    script = user.cwd / "testJob.sh"
    script.write_text(
        '#!/bin/sh\necho "hello from $(hostname)"\nls -la\necho result > result.txt\n'
    )
    script.chmod(0o644)  # users forget chmod +x; DIRAC runs the script anyway
    (job_id,) = user.submit(
        """
        JobName = "InputSandbox_Job";
        Executable = "testJob.sh";
        StdOutput = "StdOut";
        StdError = "StdErr";
        InputSandbox = {"testJob.sh"};
        OutputSandbox = {"StdOut", "StdErr", "result.txt"};
        """
    )
    assert pilot.run().returncode == 0
    assert user.status(job_id)["status"] == "Done"
    user.run("get-output", str(job_id), "--dir", "out")
    target = user.cwd / "out" / str(job_id)
    stdout = (target / "StdOut").read_text()
    assert "hello from" in stdout and "testJob.sh" in stdout
    assert (target / "result.txt").read_text() == "result\n"


def test_failing_payload_is_failed_with_its_exit_code(user: User, pilot: Pilot) -> None:
    (job_id,) = user.submit(
        """[
        Executable = "/bin/sh";
        Arguments = "-c 'echo oops >&2; exit 3'";
        StdOutput = "StdOut"; StdError = "StdErr";
        OutputSandbox = {"StdOut", "StdErr"};
        ]"""
    )
    assert pilot.run().returncode == 0
    info = user.status(job_id)
    assert info["status"] == "Failed"
    assert info["exit_code"] == 3
    user.run("get-output", str(job_id))
    assert (user.cwd / str(job_id) / "StdErr").read_text() == "oops\n"


def test_kill_of_a_running_job(user: User, pilot: Pilot) -> None:
    (job_id,) = user.submit('Executable = "/bin/sleep"; Arguments = "300";')
    process = pilot.start(idle_timeout_s=1)
    try:
        user.wait_for(job_id, {"Running"}, timeout_s=60)
        started = time.monotonic()
        out = user.run("kill", str(job_id)).stdout
        assert out == f"Killed job {job_id}\n"
        info = user.wait_for(job_id, TERMINAL, timeout_s=60)
        assert info["status"] == "Killed"
        assert time.monotonic() - started < 30
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    history = user.run("logging-info", str(job_id)).stdout
    assert "Killed" in history


def test_jdl_syntax_errors_name_line_and_column(user: User) -> None:
    bad = user.cwd / "bad.jdl"
    bad.write_text('[\n  Executable = "/bin/ls";\n  Arguments = "-l\n]\n')
    parsed = user.run("jdl", str(bad), check=False)
    assert parsed.returncode == 2  # a bad input file: usage
    assert "line 3" in parsed.stderr and "column" in parsed.stderr
    submitted = user.run("submit", str(bad), check=False)
    assert submitted.returncode == 2
    assert "line 3" in submitted.stderr
    assert "JobID" not in submitted.stdout


def test_parametric_jdl_gives_three_jobs(user: User, pilot: Pilot) -> None:
    jdl = (
        '[ Executable = "/bin/echo"; Arguments = "job %n"; Parameters = 3;\n'
        '  StdOutput = "StdOut"; OutputSandbox = {"StdOut"}; ]\n'
    )
    (user.cwd / "param.jdl").write_text(jdl)
    expanded = json.loads(user.run("jdl", "--expand", "param.jdl").stdout)
    assert [job["Arguments"] for job in expanded] == ["job 0", "job 1", "job 2"]

    job_ids = user.submit(jdl, name="param.jdl")
    assert len(job_ids) == 3
    assert pilot.run().returncode == 0
    outputs = []
    for job_id in job_ids:
        assert user.status(job_id)["status"] == "Done"
        user.run("get-output", str(job_id))
        outputs.append((user.cwd / str(job_id) / "StdOut").read_text())
    assert sorted(outputs) == ["job 0\n", "job 1\n", "job 2\n"]


def test_a_user_cannot_see_another_users_job(make_user: Callable[..., User]) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    (job_id,) = alice.submit(TUTORIAL_JDL)
    for command in (["status", str(job_id)], ["logging-info", str(job_id)], ["kill", str(job_id)]):
        result = bob.run(*command, check=False)
        assert result.returncode == 1
        assert result.stderr == f"gridpilot: no job {job_id}\n"
    assert alice.status(job_id)["status"] == "Waiting"
    admin = make_user("root", role="admin")
    assert admin.status(job_id)["owner"] == "alice"


def test_delete_removes_a_finished_job(user: User, pilot: Pilot) -> None:
    (job_id,) = user.submit('Executable = "/bin/true";')
    assert pilot.run().returncode == 0
    user.run("delete", str(job_id))
    assert user.status(job_id)["status"] == "Deleted"
    # As DIRAC: killing a job that is over leaves it as it is, and that is not an error.
    over = user.run("kill", str(job_id))
    assert over.stderr == f"gridpilot: job {job_id} is already Deleted: not killed\n"
    refused = user.run("delete", str(job_id), check=False)
    assert refused.returncode == 1
    assert refused.stderr == f"gridpilot: job {job_id}: the job is already Deleted\n"


def test_demo_runs_the_tutorial_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "client", "demo"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "JobID = 1" in out
    assert "JobID=1 Status=Done;" in out
    history = out.split("status history", 1)[1].split("---- StdOut")[0]
    rows = [line.split() for line in history.splitlines() if line.startswith("  ")]
    statuses = [row[0] for row in rows[1:]]  # rows[0] is the table header
    assert statuses[:3] == ["Received", "Checking", "Waiting"]
    assert statuses[-3:] == ["Matched", "Running", "Done"]
    stdout_part = out.split("---- StdOut ----", 1)[1]
    assert stdout_part.strip().startswith("total ")
    assert "StdOut" in stdout_part  # ls -ltr of the work dir lists the job's own StdOut
    assert list(tmp_path.iterdir()) == [], "the demo left files behind"
