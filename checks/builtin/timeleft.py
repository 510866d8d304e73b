"""Wall time left in the batch slot: fact ``time_left_s`` (None when no limit is found).

Sources, the smallest answer wins: Slurm (``SLURM_JOB_END_TIME``, else ``squeue -h -j ID
-o %L``), HTCondor (the ``$_CONDOR_JOB_AD`` and ``$_CONDOR_MACHINE_AD`` files), PBS/Torque
(``qstat -f``, else ``PBS_WALLTIME`` minus the pilot's age), LSF (``bjobs -o time_left``)
and WLCG machine/job features (``$JOBFEATURES/wall_limit_secs`` + ``jobstart_secs``,
``$MACHINEFEATURES/shutdowntime``). SGE exposes no limit to the job; there, as anywhere,
machine/job features are used when the site provides them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import psutil

from checks.api import CheckContext, CheckResult, check
from checks.builtin.batch_limits import (
    condor_time_left,
    mjf_time_left,
    parse_bjobs_time_left,
    parse_classad,
    parse_duration,
    parse_qstat_full,
)
from checks.builtin.batch_slot import detect_batch_slot
from checks.builtin.thresholds import number_option
from protocol import CheckStatus

COMMAND_TIMEOUT_S = 5.0
MJF_KEYS = ("wall_limit_secs", "jobstart_secs", "shutdowntime")


def run_command(argv: Sequence[str]) -> Optional[str]:
    """stdout of ``argv`` if it exists and succeeds within the timeout, else None."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(
            list(argv), capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None


def _read(path: Optional[str]) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _features(directory: Optional[str]) -> dict[str, str]:
    """The MJF keys present as files in ``directory``."""
    return {key: _read(str(Path(directory) / key)).strip() for key in MJF_KEYS} if directory else {}


def slurm_left(env: Mapping[str, str], now: float) -> Optional[int]:
    end_epoch_s = detect_batch_slot(env).end_epoch_s
    if end_epoch_s is not None:
        return int(end_epoch_s) - int(now)
    if env.get("SLURM_JOB_ID"):
        output = run_command(["squeue", "-h", "-j", env["SLURM_JOB_ID"], "-o", "%L"])
        if output and output.strip():
            return parse_duration(output.strip().splitlines()[0])
    return None


def condor_left(env: Mapping[str, str], now: float) -> Optional[int]:
    job_ad = parse_classad(_read(env.get("_CONDOR_JOB_AD")))
    machine_ad = parse_classad(_read(env.get("_CONDOR_MACHINE_AD")))
    return condor_time_left(job_ad, machine_ad, now)


def pbs_left(env: Mapping[str, str], now: float) -> Optional[int]:
    if env.get("PBS_JOBID"):
        output = run_command(["qstat", "-f", env["PBS_JOBID"]])
        if output:
            return parse_qstat_full(output)
    walltime = env.get("PBS_WALLTIME", "")
    if walltime.isdigit():
        # Torque gives the limit only; the pilot started just after the job did.
        started = psutil.Process(os.getppid()).create_time()
        return int(walltime) - int(now - started)
    return None


def lsf_left(env: Mapping[str, str], now: float) -> Optional[int]:
    if not env.get("LSB_JOBID"):
        return None
    output = run_command(["bjobs", "-noheader", "-o", "time_left", env["LSB_JOBID"]])
    return parse_bjobs_time_left(output) if output else None


def mjf_left(env: Mapping[str, str], now: float) -> Optional[int]:
    job, machine = _features(env.get("JOBFEATURES")), _features(env.get("MACHINEFEATURES"))
    return mjf_time_left(job, machine, now)


SOURCES: dict[str, Callable[[Mapping[str, str], float], Optional[int]]] = {
    "slurm": slurm_left,
    "htcondor": condor_left,
    "pbs": pbs_left,
    "lsf": lsf_left,
    "mjf": mjf_left,
}


def time_left(
    env: Mapping[str, str], now: float
) -> tuple[Optional[int], dict[str, int], list[str]]:
    """(the smallest time left any source gives, each source's answer, unreadable sources)."""
    answers: dict[str, int] = {}
    errors: list[str] = []
    for name, source in SOURCES.items():
        try:
            seconds = source(env, now)
        except (ValueError, OSError, psutil.Error) as exc:
            # One unreadable source must not hide the others.
            errors.append(f"{name}: {exc}")
            continue
        if seconds is not None:
            answers[name] = seconds
    return (min(answers.values()) if answers else None), answers, errors


@check("timeleft", timeout_s=15.0)
def timeleft(ctx: CheckContext) -> CheckResult:
    env: dict[str, str] = dict(os.environ)
    env.update({str(k): str(v) for k, v in dict(ctx.options.get("env", {})).items()})
    warn_below_s = number_option(ctx.options, "warn_below_s", 600)
    slot = detect_batch_slot(env)
    system, job_id = slot.batch_system, slot.batch_job_id
    left, answers, errors = time_left(env, time.time())
    facts: dict[str, Any] = {"time_left_s": left, "batch_system": system, "batch_job_id": job_id}
    facts.update({f"time_left_{name}_s": seconds for name, seconds in answers.items()})
    where = f"{system} job {job_id}".strip() if system else "no batch system"
    if errors:
        facts["time_left_errors"] = errors
    if left is None:
        status = CheckStatus.UNKNOWN if errors else CheckStatus.OK
        detail = f"; unreadable: {'; '.join(errors)}" if errors else ""
        return CheckResult(status, f"no time limit found ({where}{detail})", facts)
    sources = ", ".join(answers)
    if left < warn_below_s:
        return CheckResult(CheckStatus.WARN, f"only {left} s left ({where}; {sources})", facts)
    return CheckResult(CheckStatus.OK, f"{left} s left ({where}; {sources})", facts)
