"""The runner with real child processes: deadlines, crashes, bad refs, duplicates, secrets."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
import pytest

from checks import CheckSource, CheckSpec
from checks.runner import run_checks
from protocol import CheckReport, CheckStatus
from tests.checks.conftest import WriteModule


def _run(search_dir: Path, *specs: CheckSpec, **kwargs: object) -> list[CheckReport]:
    return run_checks(specs, workdir=search_dir, search_path=[search_dir], **kwargs)  # type: ignore[arg-type]


def test_hanging_check_times_out_at_its_deadline_and_its_processes_die(
    search_dir: Path, write_module: WriteModule
) -> None:
    pid_file = search_dir / "sleeper.pid"
    module = write_module(
        f"""
        import subprocess

        @check(timeout_s=0.5)
        def hangs(ctx: CheckContext) -> CheckResult:
            sleeper = subprocess.Popen(["sleep", "3600"])
            with open({str(pid_file)!r}, "w") as f:
                f.write(str(sleeper.pid))
            time.sleep(3600)
            return CheckResult(Status.OK)
        """
    )
    started = time.monotonic()
    [report] = _run(search_dir, CheckSpec("hangs", f"{module}:hangs", timeout_s=0.5))
    elapsed_s = time.monotonic() - started

    assert report.status is CheckStatus.TIMEOUT
    assert "0.5 s" in report.message
    assert 0.5 <= report.duration_s < 1.0
    assert elapsed_s < 1.5
    assert _gone_within(int(pid_file.read_text()), wait_s=2.0)


def _gone_within(pid: int, wait_s: float) -> bool:
    """True once ``pid`` is dead (or a zombie); SIGKILL delivery is not instantaneous."""
    give_up_at = time.monotonic() + wait_s
    while time.monotonic() < give_up_at:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.01)
    return False


def test_a_hung_check_does_not_delay_the_others(
    search_dir: Path, write_module: WriteModule
) -> None:
    module = write_module(
        """
        @check()
        def hangs(ctx: CheckContext) -> CheckResult:
            time.sleep(3600)
            return CheckResult(Status.OK)

        @check()
        def quick(ctx: CheckContext) -> CheckResult:
            return CheckResult(Status.OK, "quick")
        """
    )
    reports = _run(
        search_dir,
        CheckSpec("hangs", f"{module}:hangs", timeout_s=1.0),
        CheckSpec("quick", f"{module}:quick"),
    )
    assert [r.status for r in reports] == [CheckStatus.TIMEOUT, CheckStatus.OK]
    assert reports[1].duration_s < 1.0


def test_raising_check_fails_with_the_exception_text(
    search_dir: Path, write_module: WriteModule
) -> None:
    module = write_module(
        """
        @check()
        def broken(ctx: CheckContext) -> CheckResult:
            raise RuntimeError("scratch is not mounted")
        """
    )
    [report] = _run(search_dir, CheckSpec("broken", f"{module}:broken", fatal=True))
    assert report.status is CheckStatus.FAIL
    assert "RuntimeError: scratch is not mounted" in report.message
    assert f"{module}.py:" in report.message
    assert report.fatal


def test_unimportable_module_fails_with_the_import_error(search_dir: Path) -> None:
    [report] = _run(search_dir, CheckSpec("ghost", "no_such_site_module:probe"))
    assert report.status is CheckStatus.FAIL
    assert "No module named 'no_such_site_module'" in report.message


def test_module_with_syntax_error_fails_and_is_not_dropped(
    search_dir: Path, write_module: WriteModule
) -> None:
    module = write_module("def oops(:\n")
    good = write_module(
        """
        @check()
        def fine(ctx: CheckContext) -> CheckResult:
            return CheckResult(Status.OK)
        """
    )
    reports = _run(
        search_dir, CheckSpec("oops", f"{module}:oops"), CheckSpec("fine", f"{good}:fine")
    )
    assert [r.name for r in reports] == ["oops", "fine"]
    assert reports[0].status is CheckStatus.FAIL
    assert "SyntaxError" in reports[0].message
    assert reports[1].status is CheckStatus.OK


def test_function_without_check_decorator_fails(
    search_dir: Path, write_module: WriteModule
) -> None:
    module = write_module(
        """
        def plain(ctx):
            return CheckResult(Status.OK)
        """
    )
    [report] = _run(search_dir, CheckSpec("plain", f"{module}:plain"))
    assert report.status is CheckStatus.FAIL
    assert "not decorated with @check()" in report.message


def test_duplicate_name_is_reported_as_fail_naming_both_sources(
    search_dir: Path, write_module: WriteModule
) -> None:
    module = write_module(
        """
        @check("disk")
        def site_disk(ctx: CheckContext) -> CheckResult:
            return CheckResult(Status.OK, "site disk")
        """
    )
    reports = _run(
        search_dir,
        CheckSpec("disk", "checks.builtin.disk:disk", source=CheckSource.BUILTIN),
        CheckSpec("disk", f"{module}:site_disk", source=CheckSource.CONFIG),
    )
    assert len(reports) == 2
    assert reports[0].source == "builtin"
    duplicate = reports[1]
    assert duplicate.status is CheckStatus.FAIL
    assert duplicate.source == "config"
    assert "checks.builtin.disk:disk (builtin)" in duplicate.message
    assert f"{module}:site_disk (config)" in duplicate.message


def test_child_does_not_see_pilot_tokens(
    search_dir: Path, write_module: WriteModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDPILOT_TOKEN", "secret-1")
    monkeypatch.setenv("GRIDPILOT_TOKEN_FILE", "/secret/2")
    monkeypatch.setenv("GRIDPILOT_SITE", "LCG.Example.org")
    module = write_module(
        """
        @check()
        def environment(ctx: CheckContext) -> CheckResult:
            names = sorted(k for k in os.environ if k.startswith("GRIDPILOT"))
            return CheckResult(Status.OK, facts={"names": names})
        """
    )
    [report] = _run(search_dir, CheckSpec("environment", f"{module}:environment"))
    assert report.facts["names"] == ["GRIDPILOT_SITE"]


def test_check_receives_its_options_node_facts_and_workdir(
    search_dir: Path, write_module: WriteModule
) -> None:
    module = write_module(
        """
        @check()
        def echo(ctx: CheckContext) -> CheckResult:
            return CheckResult(
                Status.WARN,
                "echo",
                facts={
                    "options": dict(ctx.options),
                    "node": dict(ctx.node_facts),
                    "workdir": str(ctx.workdir),
                    "cwd": os.getcwd(),
                },
                tags=("echo-tag",),
            )
        """
    )
    [report] = _run(
        search_dir,
        CheckSpec("echo", f"{module}:echo"),
        options={"echo": {"threshold_mb": 5}, "other": {"x": 1}},
        node_facts={"cores": 8},
    )
    assert report.status is CheckStatus.WARN
    assert report.facts == {
        "options": {"threshold_mb": 5},
        "node": {"cores": 8},
        "workdir": str(search_dir),
        "cwd": str(search_dir),
    }
    assert report.tags == ["echo-tag"]


def test_fatal_names_mark_checks_fatal(search_dir: Path, write_module: WriteModule) -> None:
    module = write_module(
        """
        @check()
        def probe(ctx: CheckContext) -> CheckResult:
            return CheckResult(Status.OK)
        """
    )
    [report] = _run(search_dir, CheckSpec("probe", f"{module}:probe"), fatal_names={"probe"})
    assert report.fatal


def test_check_exiting_without_result_fails_with_exit_code_and_last_output(
    search_dir: Path, write_module: WriteModule
) -> None:
    module = write_module(
        """
        @check()
        def quits(ctx: CheckContext) -> CheckResult:
            print("probe binary missing", flush=True)
            os._exit(3)
        """
    )
    [report] = _run(search_dir, CheckSpec("quits", f"{module}:quits"))
    assert report.status is CheckStatus.FAIL
    assert "exited with code 3 without a result: probe binary missing" in report.message


def test_loud_check_output_cannot_block_or_corrupt_the_result(
    search_dir: Path, write_module: WriteModule
) -> None:
    module = write_module(
        """
        @check()
        def chatty(ctx: CheckContext) -> CheckResult:
            for _ in range(200):
                sys.stdout.write("x" * 10000 + "\\n")
                sys.stderr.write("{not json}\\n")
            return CheckResult(Status.OK, "said a lot")
        """
    )
    [report] = _run(search_dir, CheckSpec("chatty", f"{module}:chatty", timeout_s=5))
    assert (report.status, report.message) == (CheckStatus.OK, "said a lot")


def test_result_that_is_not_plain_json_fails(search_dir: Path, write_module: WriteModule) -> None:
    module = write_module(
        """
        @check()
        def odd(ctx: CheckContext) -> CheckResult:
            return CheckResult(Status.OK, facts={"when": object(), "nan": float("nan")})

        @check()
        def wrong_type(ctx: CheckContext) -> CheckResult:
            return {"status": "ok"}
        """
    )
    odd, wrong = _run(
        search_dir,
        CheckSpec("odd", f"{module}:odd"),
        CheckSpec("wrong_type", f"{module}:wrong_type"),
    )
    assert odd.status is CheckStatus.FAIL and "not plain JSON" in odd.message
    assert wrong.status is CheckStatus.FAIL and "returned dict" in wrong.message


def test_check_that_lingers_after_its_result_keeps_its_result(
    search_dir: Path, write_module: WriteModule
) -> None:
    module = write_module(
        """
        import atexit

        atexit.register(time.sleep, 3600)

        @check()
        def lingers(ctx: CheckContext) -> CheckResult:
            return CheckResult(Status.OK, "done early")
        """
    )
    started = time.monotonic()
    [report] = _run(search_dir, CheckSpec("lingers", f"{module}:lingers", timeout_s=0.8))
    assert (report.status, report.message) == (CheckStatus.OK, "done early")
    assert time.monotonic() - started < 1.5


def test_reports_keep_spec_order_and_measure_duration(
    search_dir: Path, write_module: WriteModule
) -> None:
    module = write_module(
        """
        @check()
        def slow(ctx: CheckContext) -> CheckResult:
            time.sleep(0.3)
            return CheckResult(Status.OK)

        @check()
        def fast(ctx: CheckContext) -> CheckResult:
            return CheckResult(Status.SKIP, "nothing to do")
        """
    )
    reports = _run(
        search_dir, CheckSpec("slow", f"{module}:slow"), CheckSpec("fast", f"{module}:fast")
    )
    assert [r.name for r in reports] == ["slow", "fast"]
    assert reports[0].duration_s >= 0.3
    assert reports[1].status is CheckStatus.SKIP


def test_unserialisable_options_fail_only_that_check(search_dir: Path) -> None:
    [report] = _run(
        search_dir,
        CheckSpec("python", "checks.builtin.python:python"),
        options={"python": {"min_version": object()}},
    )
    assert report.status is CheckStatus.FAIL
    assert "not JSON" in report.message


def test_no_specs_no_reports(tmp_path: Path) -> None:
    assert run_checks([], workdir=tmp_path) == []


def test_reports_serialise_to_the_wire(search_dir: Path) -> None:
    [report] = _run(search_dir, CheckSpec("python", "checks.builtin.python:python"))
    wire = json.loads(json.dumps(report.to_dict()))
    assert CheckReport.from_dict(wire) == report
    assert os.path.exists(wire["facts"]["python_executable"])


def test_check_killed_by_a_signal_says_so(search_dir: Path, write_module: WriteModule) -> None:
    module = write_module(
        """
        import signal

        @check()
        def crashes(ctx: CheckContext) -> CheckResult:
            os.kill(os.getpid(), signal.SIGSEGV)
            time.sleep(5)
            return CheckResult(Status.OK)
        """
    )
    [report] = _run(search_dir, CheckSpec("crashes", f"{module}:crashes"))
    assert report.status is CheckStatus.FAIL
    assert "was killed by SIGSEGV without a result" in report.message


def test_oversized_result_fails(search_dir: Path, write_module: WriteModule) -> None:
    module = write_module(
        """
        @check()
        def bloated(ctx: CheckContext) -> CheckResult:
            return CheckResult(Status.OK, facts={"blob": "x" * (2 * 1024 * 1024)})
        """
    )
    [report] = _run(search_dir, CheckSpec("bloated", f"{module}:bloated"))
    assert report.status is CheckStatus.FAIL
    assert "larger than 1048576 bytes" in report.message


def test_module_hanging_at_import_times_out(search_dir: Path, write_module: WriteModule) -> None:
    # What a module on a dead network mount looks like to the pilot.
    module = write_module("time.sleep(3600)\n")
    [report] = _run(search_dir, CheckSpec("stuck", f"{module}:anything", timeout_s=0.5))
    assert report.status is CheckStatus.TIMEOUT
    assert report.duration_s < 1.0
