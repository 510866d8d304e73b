"""Nagios-style site probes: parsing what they print, and running real scripts."""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks import CheckSource
from checks.discovery import script_checks
from checks.runner import run_checks
from checks.scripts import parse_output, script_name
from protocol import CheckStatus


@pytest.mark.parametrize(
    ("code", "status"),
    [(0, CheckStatus.OK), (1, CheckStatus.WARN), (2, CheckStatus.FAIL), (3, CheckStatus.UNKNOWN)],
)
def test_exit_codes_follow_nagios(code: int, status: CheckStatus) -> None:
    outcome = parse_output(code, b"SCRATCH OK - 120 GB free\n")
    assert outcome["status"] == status.value
    assert outcome["message"] == "SCRATCH OK - 120 GB free"


def test_facts_tags_and_perfdata_are_read() -> None:
    output = (
        b"DISK OK - 91% free | 'free'=91%;10;5 used_gb=12.5\n"
        b"long output lines are only logged\n"
        b"scratch_gb=120\n"
        b"filesystem = lustre\n"
        b"tag=BigScratch\n"
        b"tag=Lustre\n"
        b"not a fact\n"
        b"9bad=key\n"
    )
    outcome = parse_output(0, output)
    assert outcome["message"] == "DISK OK - 91% free"
    assert outcome["facts"] == {
        "free": 91,
        "used_gb": 12.5,
        "scratch_gb": 120,
        "filesystem": "lustre",
    }
    assert outcome["tags"] == ["BigScratch", "Lustre"]


def test_nonsense_is_reported_clearly() -> None:
    killed = parse_output(-11, b"")
    assert (killed["status"], killed["message"]) == ("fail", "script was killed by SIGSEGV")
    odd = parse_output(127, b"sh: probe: not found\n")
    assert odd["status"] == "unknown"
    assert odd["message"] == "exit code 127 is not a Nagios state (0-3): sh: probe: not found"
    binary = parse_output(0, os.urandom(64) + b"\x00")
    assert binary["status"] == "unknown" and "not text" in binary["message"]
    assert parse_output(0, b"")["message"] == "(no output)"


@given(st.integers(min_value=-64, max_value=300), st.binary(max_size=300))
def test_any_output_gives_a_well_formed_outcome(code: int, output: bytes) -> None:
    outcome = parse_output(code, output)
    assert CheckStatus(outcome["status"]) in set(CheckStatus)
    assert "\n" not in outcome["message"] and outcome["message"]
    assert all(isinstance(tag, str) and tag for tag in outcome["tags"])
    if code in (0, 1, 2, 3) and b"\x00" not in output and outcome["status"] != "unknown":
        assert outcome["status"] == ["ok", "warn", "fail", "unknown"][code]


@pytest.mark.parametrize(
    ("filename", "name"),
    [("check_scratch.sh", "check_scratch"), ("cvmfs probe", "cvmfs_probe"), ("x.y.py", "x")],
)
def test_script_names(filename: str, name: str) -> None:
    assert script_name(Path(filename)) == name


def _probe(directory: Path, name: str, body: str, *, executable: bool = True) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_script_dir_runs_each_executable_with_its_deadline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes = tmp_path / "probes"
    probes.mkdir()
    _probe(probes, "scratch.sh", 'echo "SCRATCH WARNING - 8 GB left"\necho scratch_gb=8\nexit 1\n')
    _probe(probes, "lustre", 'echo "LUSTRE OK"\necho tag=Lustre\necho "cwd=$(pwd)"\nexit 0\n')
    _probe(probes, "hangs.sh", "sleep 60\n")
    _probe(probes, "segv.sh", "kill -SEGV $$\n")
    _probe(probes, "garbage.sh", "printf '\\377\\376\\375\\374\\001'\nexit 0\n")
    _probe(probes, "secrets.sh", 'echo "SECRETS"\necho "token=${GRIDPILOT_TOKEN:-none}"\n')
    _probe(probes, "notes.txt", "echo never run\n", executable=False)
    with caplog.at_level(logging.INFO, logger="checks.discovery"):
        specs = script_checks(probes)
    assert "notes.txt: not executable" in caplog.text.replace(str(probes) + "/", "")
    names = [spec.name for spec in specs]
    assert names == ["garbage", "hangs", "lustre", "scratch", "secrets", "segv"]
    assert {spec.source for spec in specs} == {CheckSource.SCRIPT}
    specs = [dataclasses.replace(s, timeout_s=0.5) if s.name == "hangs" else s for s in specs]
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.setenv("GRIDPILOT_TOKEN", "secret-token")
    started = time.monotonic()
    reports = {r.name: r for r in run_checks(specs, workdir=workdir)}
    elapsed_s = time.monotonic() - started
    assert elapsed_s < 5
    assert reports["scratch"].status is CheckStatus.WARN
    assert reports["scratch"].message == "SCRATCH WARNING - 8 GB left"
    assert reports["scratch"].facts == {"scratch_gb": 8}
    assert reports["lustre"].tags == ["Lustre"]
    assert reports["lustre"].facts == {"cwd": str(workdir)}
    assert reports["hangs"].status is CheckStatus.TIMEOUT
    assert reports["segv"].status is CheckStatus.FAIL
    assert reports["segv"].message == "script was killed by SIGSEGV"
    assert reports["garbage"].status is CheckStatus.UNKNOWN
    assert reports["garbage"].message == "script output is not text (exit 0)"
    assert reports["secrets"].facts == {"token": "none"}
    assert all(r.source == "script" for r in reports.values())


def test_a_missing_script_dir_is_a_failed_check_not_silence(tmp_path: Path) -> None:
    specs = script_checks(tmp_path / "no-such-dir")
    [report] = run_checks(specs, workdir=tmp_path)
    assert report.status is CheckStatus.FAIL
    assert "cannot be read" in report.message and "no-such-dir" in report.message
