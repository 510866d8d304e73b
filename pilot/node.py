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

from checks.builtin.condor_ads import condor_job_id


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
            job_id = env.get("CONDOR_JOBID", env.get("_CONDOR_JOB_ID", "")) or condor_job_id(env)
        return BatchSlot(system, job_id, _end_epoch_s(system, env))
    return BatchSlot("", "", None)


def _end_epoch_s(system: str, env: Mapping[str, str]) -> Optional[float]:
    if system == "slurm":
        value = env.get("SLURM_JOB_END_TIME")
        if value and value.strip().isdigit():
            return float(value)
    return None


def ce_from_env(env: Mapping[str, str]) -> str:
    """The computing element the batch system names, if it names one.

    ARC sets ``GRID_GLOBAL_JOBID`` to a URL on its CE host; Slurm names its cluster in
    ``SLURM_CLUSTER_NAME``; PBS/Torque names its server in ``PBS_SERVER``.
    """
    global_id = env.get("GRID_GLOBAL_JOBID", "")
    if "://" in global_id:
        host = global_id.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
        if host:
            return host
    return env.get("SLURM_CLUSTER_NAME", "") or env.get("PBS_SERVER", "")


def site_from_env(env: Mapping[str, str]) -> str:
    """The site name the environment gives (WLCG's ``SITE_NAME``, glideinWMS' ``GLIDEIN_Site``)."""
    return env.get("SITE_NAME", "") or env.get("GLIDEIN_Site", "")


def hostname() -> str:
    return socket.getfqdn() or socket.gethostname()
