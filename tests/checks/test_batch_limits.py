"""Time left in the batch slot: each batch system's format, and the timeleft check on real files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks import CheckSpec
from checks.builtin.batch_limits import (
    condor_time_left,
    mjf_time_left,
    parse_bjobs_time_left,
    parse_classad,
    parse_duration,
    parse_qstat_full,
)
from checks.registry import load_ref
from checks.runner import run_checks
from protocol import CheckReport, CheckStatus

NOW = 1_700_000_000.0

JOB_AD = """\
ClusterId = 4242
ProcId = 0
Owner = "pilot"
JobCurrentStartDate = 1699999000
MaxRuntime = 7200
RequestCpus = 8
WantRHEL = true
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX")
"""
MACHINE_AD = 'Name = "slot1@wn01"\nGLIDEIN_ToDie = 1700003000\n'

QSTAT_PRO = """\
Job Id: 123.pbs01
    Job_Name = pilot
    resources_used.walltime = 00:10:00
    Resource_List.walltime = 02:00:00
    job_state = R
"""
QSTAT_TORQUE = "Job Id: 9.torque\n    Walltime.Remaining = 3540\n    job_state = R\n"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1-02:03:04", 93784),
        ("2:03:04", 7384),
        ("03:04", 184),
        ("59", 59),
        ("UNLIMITED", None),
        ("NOT_SET", None),
    ],
)
def test_slurm_and_pbs_durations(text: str, seconds: Any) -> None:
    assert parse_duration(text) == seconds


@given(st.integers(0, 30), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_durations_round_trip(days: int, hours: int, minutes: int, seconds: int) -> None:
    text = f"{days}-{hours:02d}:{minutes:02d}:{seconds:02d}"
    assert parse_duration(text) == ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def test_htcondor_ads() -> None:
    job, machine = parse_classad(JOB_AD), parse_classad(MACHINE_AD)
    assert job["Owner"] == "pilot" and job["WantRHEL"] is True and job["RequestCpus"] == 8
    assert job["Requirements"].startswith("(TARGET.Arch")
    # Started 1000 s ago with a 7200 s limit; the glidein dies in 3000 s.
    assert condor_time_left(job, machine, NOW) == 3000
    assert condor_time_left(job, {}, NOW) == 6200
    assert condor_time_left({"maxwalltimemins": 60}, {}, NOW) == 3600
    assert condor_time_left({"Owner": "x"}, {}, NOW) is None


def test_pbs_lsf_and_machine_job_features() -> None:
    assert parse_qstat_full(QSTAT_PRO) == 6600
    assert parse_qstat_full(QSTAT_TORQUE) == 3540
    assert parse_qstat_full("Job Id: 1\n") is None
    assert parse_bjobs_time_left("1:30 L\n") == 5400
    assert parse_bjobs_time_left("-\n") is None
    with pytest.raises(ValueError, match="bjobs"):
        parse_bjobs_time_left("soon")
    job = {"wall_limit_secs": "86400", "jobstart_secs": str(int(NOW) - 3600)}
    assert mjf_time_left(job, {}, NOW) == 82800
    assert mjf_time_left(job, {"shutdowntime": str(int(NOW) + 600)}, NOW) == 600
    assert mjf_time_left({}, {}, NOW) is None


def _timeleft(tmp_path: Path, env: dict[str, str]) -> CheckReport:
    spec: CheckSpec = load_ref("checks.builtin.timeleft:timeleft")
    [report] = run_checks([spec], workdir=tmp_path, options={"timeleft": {"env": env}})
    return report


def test_timeleft_takes_the_smallest_answer_from_real_files(tmp_path: Path) -> None:
    now = int(time.time())
    job_ad, machine_ad = tmp_path / "job.ad", tmp_path / "machine.ad"
    job_ad.write_text(f"JobCurrentStartDate = {now - 100}\nMaxRuntime = 7200\n")
    machine_ad.write_text(f"GLIDEIN_ToDie = {now + 5000}\n")
    features = tmp_path / "jobfeatures"
    features.mkdir()
    (features / "wall_limit_secs").write_text("4000\n")
    (features / "jobstart_secs").write_text(f"{now - 200}\n")
    env = {
        "_CONDOR_JOB_AD": str(job_ad),
        "_CONDOR_MACHINE_AD": str(machine_ad),
        "JOBFEATURES": str(features),
    }
    report = _timeleft(tmp_path, env)
    assert report.status is CheckStatus.OK, report.message
    assert report.facts["batch_system"] == "htcondor"
    assert 3790 <= report.facts["time_left_s"] <= 3800  # MJF: 4000 - 200
    # HTCondor: the glidein dies (5000 s) before the job limit (7100 s).
    assert 4990 <= report.facts["time_left_htcondor_s"] <= 5000
    assert "htcondor, mjf" in report.message


def test_timeleft_warns_near_the_end_of_a_slurm_slot(tmp_path: Path) -> None:
    env = {"SLURM_JOB_ID": "77", "SLURM_JOB_END_TIME": str(int(time.time()) + 120)}
    report = _timeleft(tmp_path, env)
    assert report.status is CheckStatus.WARN
    assert 110 <= report.facts["time_left_s"] <= 120
    assert "slurm job 77" in report.message


def test_timeleft_without_a_batch_system_has_no_limit(tmp_path: Path) -> None:
    report = _timeleft(tmp_path, {})
    if report.facts["batch_system"]:
        pytest.skip("this machine runs the tests inside a batch job")
    assert report.status is CheckStatus.OK
    assert report.facts["time_left_s"] is None
