"""The fork server behind the runner: many checks at once leave nothing behind."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import psutil

from checks import CheckSource, CheckSpec
from checks.registry import builtin_checks
from checks.runner import run_checks
from protocol import CheckStatus
from tests.checks.conftest import WriteModule


def test_a_mixed_crowd_of_checks_leaves_no_process_behind(
    search_dir: Path, write_module: WriteModule
) -> None:
    module = write_module(
        """
        import subprocess

        @check()
        def fine(ctx: CheckContext) -> CheckResult:
            return CheckResult(Status.OK, f"pid {os.getpid()}", facts={"sid": os.getsid(0)})

        @check()
        def spawner(ctx: CheckContext) -> CheckResult:
            subprocess.Popen(["sleep", "67.25"])
            return CheckResult(Status.OK, "left a sleeper")

        @check()
        def quits(ctx: CheckContext) -> CheckResult:
            sys.exit(4)

        @check()
        def hangs(ctx: CheckContext) -> CheckResult:
            time.sleep(60)
            return CheckResult(Status.OK)
        """
    )
    specs = [
        CheckSpec(f"{kind}-{i}", f"{module}:{kind}", timeout_s=1.0, source=CheckSource.CONFIG)
        for i in range(5)
        for kind in ("fine", "spawner", "quits", "hangs")
    ]
    started = time.monotonic()
    reports = {r.name: r for r in run_checks(specs, workdir=search_dir, search_path=[search_dir])}
    assert time.monotonic() - started < 4.0
    sessions = {reports[f"fine-{i}"].facts["sid"] for i in range(5)}
    assert len(sessions) == 5 and os.getsid(0) not in sessions  # each check its own session
    for i in range(5):
        assert reports[f"spawner-{i}"].status is CheckStatus.OK
        assert reports[f"quits-{i}"].message == "check process exited with code 4 without a result"
        assert reports[f"hangs-{i}"].status is CheckStatus.TIMEOUT

    def sleepers() -> list[psutil.Process]:
        return [
            p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "67.25"]
        ]

    # SIGKILL is delivered at once but a loaded machine may take a moment to reap.
    deadline = time.monotonic() + 3.0
    while (psutil.Process().children(recursive=True) or sleepers()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert psutil.Process().children(recursive=True) == []
    assert not sleepers()


def test_the_builtins_cost_one_interpreter_not_fourteen(tmp_path: Path) -> None:
    specs = [s for s in builtin_checks() if s.name != "cpuspeed"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    reports = run_checks(specs, workdir=tmp_path)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert len(reports) == 13
    # One interpreter start-up with its imports is ~0.1 s of CPU; thirteen were ~1 s.
    assert cpu_s < 0.6, cpu_s
