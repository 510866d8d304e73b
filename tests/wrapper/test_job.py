"""Whole jobs through JobRun: real sandboxes, real payload processes, real files."""

from __future__ import annotations

import dataclasses
import os
import sys
import tarfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from protocol import JobStatus
from tests.wrapper.conftest import DirectoryTransport, SandboxMaker, assignment
from wrapper.job import ContainerSettings, JobOutcome, JobRun, WrapperConfig
from wrapper.outcome import FAILURES
from wrapper.sandbox import unpack

FAST = WrapperConfig(kill_grace_s=0.5, upload_backoff_s=0.01)


def run_job(
    tmp_path: Path, transport: DirectoryTransport, config: WrapperConfig = FAST, **fields: object
) -> JobOutcome:
    return JobRun(assignment(**fields), tmp_path / "pilot" / "job_7", transport, config).run()


def output_of(transport: DirectoryTransport, outcome: JobOutcome, dest: Path) -> dict[str, str]:
    assert outcome.output_sandbox, "no output sandbox was uploaded"
    unpack(transport.path_of(outcome.output_sandbox), dest)
    return {str(p.relative_to(dest)): p.read_text() for p in dest.rglob("*") if p.is_file()}


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(path: Path, timeout_s: float = 5.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def test_ls_job_is_done_with_stdout_in_the_output_sandbox(
    tmp_path: Path, transport: DirectoryTransport, make_sandbox: SandboxMaker
) -> None:
    sandbox = make_sandbox({"data.txt": "input data"})
    running: list[bool] = []
    job = JobRun(
        assignment(
            executable="/bin/ls",
            arguments=["-ltr"],
            input_sandboxes=[sandbox],
            output_sandbox=["std.out", "std.err"],
        ),
        tmp_path / "pilot" / "job_7",
        transport,
        FAST,
        on_running=lambda: running.append(True),
    )
    outcome = job.run()
    assert outcome.status == JobStatus.DONE
    assert outcome.minor_status == "Execution Complete"
    assert (outcome.application_status, outcome.exit_code) == ("Exit code 0", 0)
    assert not outcome.infrastructure_error
    assert running == [True]
    assert set(outcome.timings_s) == {"stage_in", "setup", "payload", "stage_out"}
    files = output_of(transport, outcome, tmp_path / "out")
    assert "data.txt" in files["std.out"]
    assert files["std.err"] == ""
    update = outcome.to_status_update()
    assert update.output_sandbox == outcome.output_sandbox
    assert update.status == JobStatus.DONE


def test_shipped_script_writes_files_that_come_back(
    tmp_path: Path, transport: DirectoryTransport, make_sandbox: SandboxMaker
) -> None:
    script = 'mkdir -p results\necho "arg=$1 home=$HOME" > results/out.txt\necho log > run.log\n'
    sandbox = make_sandbox({"run.sh": "#!/bin/sh\n" + script})
    outcome = run_job(
        tmp_path,
        transport,
        executable="run.sh",
        arguments=["42"],
        input_sandboxes=[sandbox],
        output_sandbox=["results", "*.log", "missing.root"],
    )
    assert outcome.status == JobStatus.DONE
    files = output_of(transport, outcome, tmp_path / "out")
    workdir = tmp_path / "pilot" / "job_7"
    assert files["results/out.txt"] == f"arg=42 home={workdir}\n"
    assert files["run.log"] == "log\n"
    assert outcome.output_missing == ["missing.root"]


def test_non_zero_exit_fails_and_still_uploads_output(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    outcome = run_job(
        tmp_path,
        transport,
        executable="/bin/sh",
        arguments=["-c", "echo broken >&2; exit 3"],
        output_sandbox=["std.err"],
    )
    assert outcome.status == JobStatus.FAILED
    assert outcome.minor_status == "Application Finished With Errors"
    assert (outcome.exit_code, outcome.application_status) == (3, "Exit code 3")
    assert not outcome.infrastructure_error
    assert output_of(transport, outcome, tmp_path / "out") == {"std.err": "broken\n"}


def test_payload_killed_by_a_signal_reports_128_plus_n(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    outcome = run_job(tmp_path, transport, executable="/bin/sh", arguments=["-c", "kill -9 $$"])
    assert outcome.status == JobStatus.FAILED
    assert outcome.exit_code == 137
    assert outcome.application_status == "Killed by signal 9 (SIGKILL)"


def test_kill_from_another_thread_ends_the_whole_tree(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    script = """
        ( trap '' TERM; sleep 60 & echo $! >> pids; sleep 60 ) &
        echo $! >> pids
        sleep 60 & echo $! >> pids
        echo started > ready
        wait
    """
    job = JobRun(
        assignment(executable="/bin/sh", arguments=["-c", script], output_sandbox=["pids"]),
        tmp_path / "pilot" / "job_7",
        transport,
        FAST,
    )
    outcomes: list[JobOutcome] = []
    runner = threading.Thread(target=lambda: outcomes.append(job.run()))
    runner.start()
    wait_for(tmp_path / "pilot" / "job_7" / "ready")
    pids = [int(p) for p in (tmp_path / "pilot" / "job_7" / "pids").read_text().split()]
    killed_at = time.monotonic()
    job.kill("Killed by user")
    runner.join(timeout=10)
    assert not runner.is_alive()
    assert time.monotonic() - killed_at < FAST.kill_grace_s + 2.0
    outcome = outcomes[0]
    assert outcome.status == JobStatus.KILLED
    assert outcome.minor_status == "Killed: Killed by user"
    assert outcome.output_sandbox  # uploaded whatever the final status
    assert [pid for pid in pids if alive(pid)] == []


def test_kill_before_the_payload_starts_runs_nothing(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    job = JobRun(
        assignment(executable="/bin/sh", arguments=["-c", "touch ran"]),
        tmp_path / "pilot" / "job_7",
        transport,
        FAST,
    )
    job.kill("pilot draining")
    outcome = job.run()
    assert outcome.status == JobStatus.KILLED
    assert outcome.minor_status == "Killed: pilot draining"
    assert not (tmp_path / "pilot" / "job_7" / "ran").exists()


def test_usage_is_readable_while_the_payload_runs(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    hog = (
        "import time; b = bytearray(32 * 1024 * 1024); "
        "open('ready', 'w').write('1\\n'); time.sleep(30)"
    )
    job = JobRun(
        assignment(executable=sys.executable, arguments=["-c", hog]),
        tmp_path / "pilot" / "job_7",
        transport,
        FAST,
    )
    assert job.usage() == (0.0, 0)
    runner = threading.Thread(target=job.run)
    runner.start()
    wait_for(tmp_path / "pilot" / "job_7" / "ready")
    cpu_s, rss_bytes = job.usage()
    job.kill("test over")
    runner.join(timeout=10)
    assert rss_bytes >= 32 * 1024 * 1024
    assert cpu_s >= 0.0


def test_missing_executable_is_a_payload_failure(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    outcome = run_job(tmp_path, transport, executable="no-such-program")
    assert outcome.status == JobStatus.FAILED
    assert outcome.minor_status == "Application Not Found: no-such-program"
    assert not outcome.infrastructure_error


def test_checksum_mismatch_refuses_the_sandbox(
    tmp_path: Path, transport: DirectoryTransport, make_sandbox: SandboxMaker
) -> None:
    sandbox = make_sandbox({"run.sh": "#!/bin/sh\ntouch ran\n"})
    transport.path_of(sandbox).write_bytes(b"tampered")
    outcome = run_job(tmp_path, transport, executable="run.sh", input_sandboxes=[sandbox])
    assert outcome.status == JobStatus.FAILED
    assert outcome.minor_status == "Input Sandbox Checksum Mismatch"
    assert outcome.infrastructure_error
    assert not (tmp_path / "pilot" / "job_7" / "ran").exists()


def test_unsafe_input_sandbox_fails_the_job_and_writes_nothing_outside(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        tar.addfile(info)
    outcome = run_job(tmp_path, transport, input_sandboxes=[transport.put(evil)])
    assert outcome.status == JobStatus.FAILED
    assert outcome.minor_status.startswith("Unsafe Input Sandbox: ../../escaped.txt")
    assert not outcome.infrastructure_error
    assert not list(tmp_path.rglob("escaped.txt"))


def test_unreachable_input_sandbox_is_an_infrastructure_failure(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    outcome = run_job(tmp_path, transport, input_sandboxes=["ab" * 32])
    assert outcome.status == JobStatus.FAILED
    assert outcome.minor_status == "Input Sandbox Download Failed"
    assert outcome.infrastructure_error
    assert list((tmp_path / "pilot" / "job_7").iterdir()) == []


def test_output_upload_is_retried(tmp_path: Path, transport: DirectoryTransport) -> None:
    transport.fail_uploads = 2
    outcome = run_job(
        tmp_path, transport, executable="/bin/echo", arguments=["hi"], output_sandbox=["std.out"]
    )
    assert outcome.status == JobStatus.DONE
    assert transport.upload_attempts == 3
    assert output_of(transport, outcome, tmp_path / "out") == {"std.out": "hi\n"}


def test_output_upload_that_never_works_fails_the_job_as_infrastructure(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    transport.fail_uploads = 100
    outcome = run_job(tmp_path, transport, executable="/bin/echo", output_sandbox=["std.out"])
    assert transport.upload_attempts == 1 + FAST.upload_retries
    assert outcome.status == JobStatus.FAILED
    assert outcome.minor_status == "Output Sandbox Upload Failed"
    assert outcome.infrastructure_error
    assert outcome.output_sandbox == ""


def test_output_over_the_cap_is_uploaded_without_what_does_not_fit(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    config = WrapperConfig(max_output_sandbox_bytes=1000, upload_backoff_s=0.01)
    outcome = run_job(
        tmp_path,
        transport,
        config,
        executable="/bin/sh",
        arguments=["-c", "head -c 5000 /dev/zero > big.bin; echo small > small.txt"],
        output_sandbox=["big.bin", "small.txt"],
    )
    assert outcome.status == JobStatus.DONE
    assert outcome.minor_status == "Output Sandbox Over Limit: big.bin left out"
    assert outcome.output_left_out == ["big.bin"]
    assert output_of(transport, outcome, tmp_path / "out") == {"small.txt": "small\n"}


def test_payload_environment_is_clean_and_describes_the_job(
    tmp_path: Path, transport: DirectoryTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDPILOT_TOKEN", "pilot-secret")
    monkeypatch.setenv("LANG", "C.UTF-8")
    outcome = run_job(
        tmp_path,
        transport,
        executable="env",
        cores=4,
        description={"ExecutionEnvironment": ["MY_SETTING=a=b", "bad name=x"]},
    )
    assert outcome.status == JobStatus.DONE
    env = dict(
        line.split("=", 1)
        for line in (tmp_path / "pilot" / "job_7" / "std.out").read_text().splitlines()
    )
    assert "GRIDPILOT_TOKEN" not in env
    assert "pilot-secret" not in env.values()
    assert env["HOME"] == str(tmp_path / "pilot" / "job_7")
    assert env["GRIDPILOT_JOB_ID"] == "7"
    assert env["GRIDPILOT_CORES"] == env["OMP_NUM_THREADS"] == "4"
    assert env["LANG"] == "C.UTF-8"
    assert env["MY_SETTING"] == "a=b"


def test_plain_execution_refused_by_the_site_is_an_infrastructure_failure(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    config = WrapperConfig(allow_plain=False)
    outcome = run_job(
        tmp_path, transport, config, executable="/bin/sh", arguments=["-c", "touch ran"]
    )
    assert outcome.status == JobStatus.FAILED
    assert outcome.minor_status.startswith("Runtime Unavailable")
    assert outcome.infrastructure_error
    assert not (tmp_path / "pilot" / "job_7" / "ran").exists()


def test_container_job_on_a_plain_node_is_an_infrastructure_failure(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    plain_only = dataclasses.replace(FAST, containers=ContainerSettings(runtimes=()))
    outcome = run_job(tmp_path, transport, plain_only, container="/cvmfs/images/el9.sif")
    assert outcome.status == JobStatus.FAILED
    assert outcome.minor_status.startswith("Runtime Unavailable")
    assert outcome.infrastructure_error


def test_output_file_names_leaving_the_work_dir_are_refused(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    outcome = run_job(tmp_path, transport, stdout="../../stolen.txt")
    assert outcome.status == JobStatus.FAILED
    assert outcome.minor_status == "Invalid StdOutput Or StdError: ../../stolen.txt"
    assert not list(tmp_path.rglob("stolen.txt"))
    assert os.listdir(tmp_path / "pilot") == ["job_7"]


def test_an_infrastructure_failure_reaches_the_status_update(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    """One converter from outcome to report, and it keeps ``infrastructure_error``: the
    coordinator reschedules the job instead of failing it for good."""
    outcome = run_job(tmp_path, transport, input_sandboxes=["ab" * 32])
    assert outcome.minor_status == "Input Sandbox Download Failed"
    update = outcome.to_status_update(match_s=0.25)
    assert (update.status, update.infrastructure_error) == (JobStatus.FAILED, True)
    assert update.timings_s["match"] == 0.25
    assert update.timings_s["stage_in"] == outcome.timings_s["stage_in"]


def test_no_row_of_the_failure_table_is_hidden_by_an_earlier_one() -> None:
    for index, row in enumerate(FAILURES):
        for earlier in FAILURES[:index]:
            hidden = earlier.step is row.step and issubclass(row.error, earlier.error)
            assert not hidden, f"{row} can never match: {earlier} comes first"
