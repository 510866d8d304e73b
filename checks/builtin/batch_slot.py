"""Which batch system runs this process, its job id, and when its slot ends: one answer.

The pilot (what it registers) and the checks (``timeleft``'s facts) both ask
``detect_batch_slot``, so they cannot disagree. It lives among the checks because the
layering lets the pilot import the checks, never the other way round.

| system | detected by (set and not empty) | job id |
|---|---|---|
| Slurm | ``SLURM_JOB_ID`` | ``SLURM_JOB_ID`` |
| HTCondor | ``_CONDOR_JOB_AD`` (the starter's job ad file) | ``ClusterId.ProcId`` from the ad |
| PBS/Torque | ``PBS_JOBID`` | ``PBS_JOBID`` |
| LSF | ``LSB_JOBID`` | ``LSB_JOBID`` |
| SGE/UGE | ``JOB_ID`` with ``SGE_ROOT`` or ``SGE_TASK_ID`` (not ``JOB_ID`` alone) | ``JOB_ID`` |

HTCondor sets no job id variable of its own; the id is read from the job ad (else the
slot ad's ``JobId``). Slurm alone says when the slot ends in the environment
(``SLURM_JOB_END_TIME``); the ``timeleft`` check asks the others' commands and files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Optional

from checks.builtin.condor_ads import JOB_AD_VARIABLE, condor_job_id


@dataclasses.dataclass(frozen=True)
class BatchSlot:
    batch_system: str
    """``slurm``, ``htcondor``, ``pbs``, ``lsf``, ``sge`` or ``""`` outside a batch system."""
    batch_job_id: str
    end_epoch_s: Optional[float] = None
    """When the slot ends (UNIX time), when the batch system says so in the environment."""


NO_BATCH_SLOT = BatchSlot("", "")


def detect_batch_slot(env: Mapping[str, str]) -> BatchSlot:
    """The batch slot ``env`` (a process environment) runs in; ``NO_BATCH_SLOT`` if none."""
    if env.get("SLURM_JOB_ID"):
        return BatchSlot("slurm", env["SLURM_JOB_ID"], _slurm_end_epoch_s(env))
    if env.get(JOB_AD_VARIABLE):
        return BatchSlot("htcondor", condor_job_id(env))
    for system, variable in (("pbs", "PBS_JOBID"), ("lsf", "LSB_JOBID")):
        if env.get(variable):
            return BatchSlot(system, env[variable])
    if env.get("JOB_ID") and (env.get("SGE_ROOT") or env.get("SGE_TASK_ID")):
        return BatchSlot("sge", env["JOB_ID"])
    return NO_BATCH_SLOT


def _slurm_end_epoch_s(env: Mapping[str, str]) -> Optional[float]:
    value = env.get("SLURM_JOB_END_TIME", "").strip()
    return float(value) if value.isdigit() else None
