"""Facts about the node that come from the batch system rather than from checks.

Cores, memory, disk and platform are measured by the built-in checks (the single source of
node facts); this module names the batch system the pilot runs under, its job id, and the
wall time left in the slot. Pure functions over an environment mapping and a clock.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Mapping
from typing import Optional


@dataclasses.dataclass(frozen=True)
class BatchSlot:
    batch_system: str
    """``slurm``, ``htcondor``, ``pbs``, ``lsf``, ``sge`` or ``""`` outside a batch system."""
    batch_job_id: str
    end_epoch_s: Optional[float]
    """When the slot ends (UNIX time), when the batch system tells us."""


_JOB_ID_VARIABLES = (
    ("slurm", "SLURM_JOB_ID"),
    ("htcondor", "_CONDOR_JOB_AD"),
    ("pbs", "PBS_JOBID"),
    ("lsf", "LSB_JOBID"),
    ("sge", "JOB_ID"),
)


def detect_batch_slot(env: Mapping[str, str]) -> BatchSlot:
    for system, variable in _JOB_ID_VARIABLES:
        if variable not in env:
            continue
        if system == "sge" and "SGE_ROOT" not in env:
            continue
        job_id = env[variable]
        if system == "htcondor":
            job_id = env.get("CONDOR_JOBID", env.get("_CONDOR_JOB_ID", ""))
        return BatchSlot(system, job_id, _end_epoch_s(system, env))
    return BatchSlot("", "", None)


def _end_epoch_s(system: str, env: Mapping[str, str]) -> Optional[float]:
    if system == "slurm":
        value = env.get("SLURM_JOB_END_TIME")
        if value and value.strip().isdigit():
            return float(value)
    return None


def hostname() -> str:
    return socket.getfqdn() or socket.gethostname()
