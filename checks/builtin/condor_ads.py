"""What an HTCondor slot gives the pilot, read from the job's and the slot's ad files.

HTCondor's starter writes the job's ClassAd to the file named by ``$_CONDOR_JOB_AD`` and
the slot's (machine) ClassAd to ``$_CONDOR_MACHINE_AD``, one ``Key = value`` per line.
The slot's ``Cpus`` and ``Memory`` (MiB) are what the startd actually gave this job (a
dynamic slot may be larger than asked for); the job's ``RequestCpus`` and
``RequestMemory`` (MB) are what it asked for, used when the slot's ad is missing. HTCondor
sets no job id variable: the id is the job ad's ``ClusterId.ProcId``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Optional

from checks.builtin.batch_limits import ClassAdValue, classad_get, parse_classad

JOB_AD_VARIABLE = "_CONDOR_JOB_AD"
MACHINE_AD_VARIABLE = "_CONDOR_MACHINE_AD"


def read_ad(env: Mapping[str, str], variable: str) -> dict[str, ClassAdValue]:
    """The ad in the file ``env[variable]`` names; empty when unset or unreadable."""
    path = env.get(variable, "")
    if not path:
        return {}
    try:
        return parse_classad(Path(path).read_text(errors="replace"))
    except OSError:
        return {}


def _whole_number(value: Optional[ClassAdValue]) -> Optional[int]:
    """A positive integer attribute; None for expressions (an unset RequestMemory is one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if value > 0 else None


def _slot_or_request(env: Mapping[str, str], slot_key: str, request_key: str) -> Optional[int]:
    if JOB_AD_VARIABLE not in env and MACHINE_AD_VARIABLE not in env:
        return None
    provided = _whole_number(classad_get(read_ad(env, MACHINE_AD_VARIABLE), slot_key))
    if provided is not None:
        return provided
    return _whole_number(classad_get(read_ad(env, JOB_AD_VARIABLE), request_key))


def condor_cores(env: Mapping[str, str]) -> Optional[int]:
    """Cores of this HTCondor slot (``Cpus``), else the job's ``RequestCpus``."""
    return _slot_or_request(env, "Cpus", "RequestCpus")


def condor_memory_mb(env: Mapping[str, str]) -> Optional[int]:
    """Memory of this HTCondor slot in MB (``Memory``), else the job's ``RequestMemory``."""
    return _slot_or_request(env, "Memory", "RequestMemory")


def condor_job_id(env: Mapping[str, str]) -> str:
    """``ClusterId.ProcId`` from the job ad (as ``condor_q`` shows it), else the slot's
    ``JobId``; empty when neither is readable."""
    job_ad = read_ad(env, JOB_AD_VARIABLE)
    cluster, proc = classad_get(job_ad, "ClusterId"), classad_get(job_ad, "ProcId")
    if isinstance(cluster, int) and isinstance(proc, int):
        return f"{cluster}.{proc}"
    job_id = classad_get(read_ad(env, MACHINE_AD_VARIABLE), "JobId")
    return job_id if isinstance(job_id, str) else ""
