"""Plain runtime with real processes: exit codes, signals, output files, process trees."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from wrapper.errors import ExecutableNotFound, PayloadStartError, RuntimeUnavailable
from wrapper.plain import PlainRuntime, resolve_executable
from wrapper.runtime import RunningPayload, RunSpec

ENV = {"PATH": "/usr/bin:/bin"}


def spec(workdir: Path, argv: list[str], **extra: object) -> RunSpec:
    workdir.mkdir(exist_ok=True)
    fields: dict[str, object] = {
        "argv": argv,
        "cwd": workdir,
        "env": ENV,
        "stdout_path": workdir / "std.out",
        "stderr_path": workdir / "std.err",
    }
    fields.update(extra)
    return RunSpec(**fields)  # type: ignore[arg-type]


def run_to_end(payload: RunningPayload, timeout_s: float = 10.0) -> None:
    assert payload.wait(timeout_s=timeout_s) is not None, "payload did not end"


def read_pids(path: Path, count: int, timeout_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            pids = [int(line) for line in path.read_text().split()]
            if len(pids) >= count:
                return pids
        time.sleep(0.02)
    raise AssertionError(f"payload did not write {count} pids to {path}")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stdout_and_stderr_go_to_their_files(tmp_path: Path) -> None:
    work = tmp_path / "w"
    payload = PlainRuntime().start(spec(work, ["sh", "-c", "echo out; echo err >&2; exit 3"]))
    run_to_end(payload)
    result = payload.finish(grace_s=1.0)
    assert (result.exit_code, result.signal) == (3, None)
    assert (work / "std.out").read_text() == "out\n"
    assert (work / "std.err").read_text() == "err\n"


def test_one_file_for_both_streams_keeps_both(tmp_path: Path) -> None:
    work = tmp_path / "w"
    both = work / "all.log"
    script = "for i in 1 2 3; do echo out$i; echo err$i >&2; done"
    payload = PlainRuntime().start(
        spec(work, ["sh", "-c", script], stdout_path=both, stderr_path=both)
    )
    run_to_end(payload)
    payload.finish(grace_s=1.0)
    assert both.read_text().split() == ["out1", "err1", "out2", "err2", "out3", "err3"]


def test_signal_death_is_reported_as_signal_and_128_plus_n(tmp_path: Path) -> None:
    payload = PlainRuntime().start(spec(tmp_path / "w", ["sh", "-c", "kill -9 $$"]))
    assert payload.wait(timeout_s=10) == 128 + signal.SIGKILL
    result = payload.finish(grace_s=1.0)
    assert result.exit_code is None
    assert result.signal == signal.SIGKILL
    assert result.shell_exit_code == 137


def test_exit_code_above_128_is_not_mistaken_for_a_signal(tmp_path: Path) -> None:
    payload = PlainRuntime().start(spec(tmp_path / "w", ["sh", "-c", "exit 130"]))
    run_to_end(payload)
    result = payload.finish(grace_s=1.0)
    assert (result.exit_code, result.signal) == (130, None)


def test_environment_is_exactly_the_one_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PILOT_SECRET_TOKEN", "s3cr3t")
    work = tmp_path / "w"
    payload = PlainRuntime().start(spec(work, ["env"], env={"PATH": "/usr/bin:/bin", "A": "1"}))
    run_to_end(payload)
    payload.finish(grace_s=1.0)
    lines = set((work / "std.out").read_text().split("\n")) - {""}
    assert lines == {"PATH=/usr/bin:/bin", "A=1"}


def test_payload_runs_in_its_own_session(tmp_path: Path) -> None:
    payload = PlainRuntime().start(spec(tmp_path / "w", ["sleep", "5"]))
    try:
        assert os.getsid(payload.pid) == payload.pid != os.getsid(0)
        assert os.getpgid(payload.pid) == payload.pid
    finally:
        payload.kill_tree("test over", grace_s=0.5)
        run_to_end(payload)
        payload.finish(grace_s=0.5)


def test_kill_tree_reaches_children_grandchildren_and_escapees(tmp_path: Path) -> None:
    work = tmp_path / "w"
    # A child ignoring TERM (and its sleeping grandchild, which inherits that), a plain
    # grandchild, and one that left the process group with setsid.
    script = """
        ( trap '' TERM; sleep 60 & echo $! >> pids; sleep 60 ) &
        echo $! >> pids
        setsid sleep 60 & echo $! >> pids
        sleep 60 & echo $! >> pids
        wait
    """
    payload = PlainRuntime().start(spec(work, ["sh", "-c", script]))
    pids = read_pids(work / "pids", 4)
    payload.sample()  # remember the tree, as the job's supervision loop does
    started_s = time.monotonic()
    payload.kill_tree("test", grace_s=0.5)
    run_to_end(payload, timeout_s=5)
    result = payload.finish(grace_s=0.5)
    assert time.monotonic() - started_s < 3.0
    assert result.killed_reason == "test"
    assert result.signal == signal.SIGTERM
    survivors = [pid for pid in pids if not gone(pid)]
    assert survivors == []


def test_processes_left_behind_are_killed_when_the_payload_ends(tmp_path: Path) -> None:
    work = tmp_path / "w"
    payload = PlainRuntime().start(
        spec(work, ["sh", "-c", "sleep 60 & echo $! > pids; trap '' TERM; exit 0"])
    )
    pid = read_pids(work / "pids", 1)[0]
    run_to_end(payload)
    result = payload.finish(grace_s=0.5)
    assert result.exit_code == 0
    assert result.killed_reason == ""
    assert gone(pid)


def test_usage_covers_the_whole_tree(tmp_path: Path) -> None:
    work = tmp_path / "w"
    hog = "import time; b = bytearray(64 * 1024 * 1024); time.sleep(30)"
    script = f"'{sys.executable}' -c '{hog}' & echo $! > pids; wait"
    payload = PlainRuntime().start(spec(work, ["sh", "-c", script]))
    read_pids(work / "pids", 1)
    deadline = time.monotonic() + 5
    while payload.sample().rss_bytes < 64 * 1024 * 1024 and time.monotonic() < deadline:
        time.sleep(0.05)
    from_other_thread: list[int] = []
    reader = threading.Thread(target=lambda: from_other_thread.append(payload.sample().rss_bytes))
    reader.start()
    reader.join()
    payload.kill_tree("done", grace_s=0.5)
    run_to_end(payload)
    result = payload.finish(grace_s=0.5)
    assert from_other_thread[0] >= 64 * 1024 * 1024
    assert result.max_rss_bytes >= 64 * 1024 * 1024


def test_memory_of_a_small_payload_is_its_own_not_the_wrappers(tmp_path: Path) -> None:
    ballast = bytearray(128 * 1024 * 1024)
    ballast[::4096] = b"\1" * len(ballast[::4096])  # make the wrapper's pages resident
    payload = PlainRuntime().start(spec(tmp_path / "w", ["sleep", "0.3"]))
    payload.sample()
    run_to_end(payload)
    result = payload.finish(grace_s=0.5)
    del ballast
    assert 0 < result.max_rss_bytes < 32 * 1024 * 1024


def test_cpu_time_of_a_short_payload_is_counted(tmp_path: Path) -> None:
    burn = "import time; t = time.process_time(); exec('while time.process_time() - t < 0.3: pass')"
    payload = PlainRuntime().start(spec(tmp_path / "w", [sys.executable, "-c", burn]))
    run_to_end(payload)
    result = payload.finish(grace_s=0.5)
    assert result.cpu_s >= 0.25
    assert result.wall_s >= 0.25


# ------------------------------------------------------------------- executable lookup


def test_bare_name_is_looked_up_on_path_then_in_the_work_dir(tmp_path: Path) -> None:
    assert resolve_executable("sh", tmp_path, "/usr/bin:/bin") in ("/usr/bin/sh", "/bin/sh")
    (tmp_path / "myjob").write_text("#!/bin/sh\necho mine\n")
    assert resolve_executable("myjob", tmp_path, "/usr/bin:/bin") == str(tmp_path / "myjob")


def test_shipped_script_without_exec_bit_is_made_executable(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    (work / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (work / "run.sh").chmod(0o644)
    payload = PlainRuntime().start(spec(work, ["./run.sh"]))
    run_to_end(payload)
    assert payload.finish(grace_s=0.5).exit_code == 0
    assert (work / "std.out").read_text() == "ran\n"


def test_missing_executable_is_the_jobs_fault(tmp_path: Path) -> None:
    with pytest.raises(ExecutableNotFound):
        PlainRuntime().start(spec(tmp_path / "w", ["no-such-program-anywhere"]))
    with pytest.raises(ExecutableNotFound):
        PlainRuntime().start(spec(tmp_path / "w", ["./missing.sh"]))


def test_unexecutable_file_outside_the_work_dir_is_the_jobs_fault(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("not a program")
    data.chmod(0o644)
    with pytest.raises(PayloadStartError):
        PlainRuntime().start(spec(tmp_path / "w", [str(data)]))
    assert not os.access(data, os.X_OK)


def test_script_with_a_missing_interpreter_is_the_jobs_fault(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    (work / "run.sh").write_text("#!/no/such/interpreter\n")
    with pytest.raises(PayloadStartError, match=r"run\.sh"):
        PlainRuntime().start(spec(work, ["./run.sh"]))


def test_container_image_is_refused_by_plain_runtime(tmp_path: Path) -> None:
    with pytest.raises(RuntimeUnavailable):
        PlainRuntime().start(spec(tmp_path / "w", ["true"], image="/cvmfs/images/el9.sif"))
