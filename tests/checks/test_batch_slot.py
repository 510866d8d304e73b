"""One answer to "which batch system, which job, until when": the table over every system,
and the pilot and the ``timeleft`` check giving that same answer."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from checks.api import CheckContext
from checks.builtin.batch_slot import BatchSlot, detect_batch_slot
from checks.builtin.timeleft import timeleft
from pilot.config import load_config
from pilot.registration import build_registration
from pilot.slots import NodeCapacity
from tests.pilot.test_config import _base

JOB_AD = "ClusterId = 4242\nProcId = 3\nMaxRuntime = 7200\n"
MACHINE_AD = 'JobId = "77.0"\n'

# (case, environment ({ad} is the job ad's path, {machine} the slot ad's), expected slot)
TABLE: list[tuple[str, dict[str, str], BatchSlot]] = [
    ("slurm", {"SLURM_JOB_ID": "42"}, BatchSlot("slurm", "42")),
    (
        "slurm with its end time",
        {"SLURM_JOB_ID": "42", "SLURM_JOB_END_TIME": "1700000000"},
        BatchSlot("slurm", "42", 1.7e9),
    ),
    ("slurm's id empty", {"SLURM_JOB_ID": ""}, BatchSlot("", "")),
    ("htcondor", {"_CONDOR_JOB_AD": "{ad}"}, BatchSlot("htcondor", "4242.3")),
    (
        "htcondor, the slot ad only",
        {"_CONDOR_JOB_AD": "{missing}", "_CONDOR_MACHINE_AD": "{machine}"},
        BatchSlot("htcondor", "77.0"),
    ),
    (
        "htcondor ignores guessed id variables",
        {"_CONDOR_JOB_AD": "{ad}", "CONDOR_JOBID": "1.0", "CONDOR_JOB_ID": "2.0"},
        BatchSlot("htcondor", "4242.3"),
    ),
    ("htcondor's ad unset", {"_CONDOR_JOB_AD": ""}, BatchSlot("", "")),
    ("sge", {"JOB_ID": "9", "SGE_ROOT": "/opt/sge"}, BatchSlot("sge", "9")),
    ("uge array task", {"JOB_ID": "9", "SGE_TASK_ID": "3"}, BatchSlot("sge", "9")),
    ("JOB_ID alone is not sge", {"JOB_ID": "9"}, BatchSlot("", "")),
    ("pbs/torque", {"PBS_JOBID": "123.pbs01"}, BatchSlot("pbs", "123.pbs01")),
    ("lsf", {"LSB_JOBID": "5"}, BatchSlot("lsf", "5")),
    ("none", {}, BatchSlot("", "")),
]


def _env(tmp_path: Path, template: dict[str, str]) -> dict[str, str]:
    (tmp_path / "job.ad").write_text(JOB_AD)
    (tmp_path / "machine.ad").write_text(MACHINE_AD)
    paths = {
        "ad": tmp_path / "job.ad",
        "machine": tmp_path / "machine.ad",
        "missing": tmp_path / "gone.ad",
    }
    return {name: value.format(**paths) for name, value in template.items()}


@pytest.mark.parametrize(("env", "expected"), [row[1:] for row in TABLE], ids=[r[0] for r in TABLE])
def test_the_batch_slot_of_every_system(
    tmp_path: Path, env: dict[str, str], expected: BatchSlot
) -> None:
    assert detect_batch_slot(_env(tmp_path, env)) == expected


@pytest.mark.parametrize(("env", "expected"), [row[1:] for row in TABLE], ids=[r[0] for r in TABLE])
def test_the_pilot_and_the_timeleft_check_say_the_same(
    tmp_path: Path, env: dict[str, str], expected: BatchSlot
) -> None:
    own = _env(tmp_path, env)
    outside = {k: v for k, v in os.environ.items() if k not in own}
    if detect_batch_slot(outside).batch_system:
        pytest.skip("this machine runs the tests inside a batch job")
    context = CheckContext({"env": own}, {}, tmp_path, logging.getLogger("timeleft"))
    facts = timeleft(context).facts
    config = load_config(_base(tmp_path), {})
    registration = build_registration(
        config, own, [], detect_batch_slot(own), NodeCapacity(1, 0), None
    )
    told = (registration.batch_system, registration.batch_job_id)
    assert told == (facts["batch_system"], facts["batch_job_id"])
    assert told == (expected.batch_system, expected.batch_job_id)
