"""Parsers for what batch systems say about a job's time limit; pure functions of text.

``checks.builtin.timeleft`` reads the variables, files and commands and feeds them here,
so every format is tested on real contents without a batch system.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Optional, Union

ClassAdValue = Union[int, float, str, bool]

_UNLIMITED = frozenset({"UNLIMITED", "INFINITE", "NOT_SET", "INVALID", ""})
_CLASSAD_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$")


def parse_duration(text: str) -> Optional[int]:
    """``[D-]HH:MM:SS``, ``MM:SS``, ``SS`` (Slurm's ``%L``, PBS walltimes) -> seconds.

    None for Slurm's UNLIMITED/NOT_SET/INVALID; ValueError for anything else unreadable.
    """
    value = text.strip().upper()
    if value in _UNLIMITED:
        return None
    days = 0
    if "-" in value:
        day_text, _, value = value.partition("-")
        days = int(day_text)
    parts = [int(part) for part in value.split(":")]
    if not 1 <= len(parts) <= 3 or any(part < 0 for part in parts):
        raise ValueError(f"not a duration: {text!r}")
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + part
    return days * 86400 + seconds


def parse_classad(text: str) -> dict[str, ClassAdValue]:
    """An HTCondor ad file (``Key = value`` lines, as in ``$_CONDOR_JOB_AD``) -> dict.

    Numbers become int/float, quoted strings lose their quotes, true/false become bool;
    expressions stay as their text. Keys keep their case (ClassAds ignore it: look up
    with ``classad_get``).
    """
    ad: dict[str, ClassAdValue] = {}
    for line in text.splitlines():
        match = _CLASSAD_LINE.match(line)
        if match is None:
            continue
        key, raw = match.groups()
        ad[key] = _classad_value(raw)
    return ad


def _classad_value(raw: str) -> ClassAdValue:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1]
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            continue
    return raw


def classad_get(ad: Mapping[str, ClassAdValue], key: str) -> Optional[ClassAdValue]:
    """Case-insensitive lookup, as ClassAd attribute names are."""
    lowered = key.lower()
    return next((value for k, value in ad.items() if k.lower() == lowered), None)


def _number(value: Optional[ClassAdValue]) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def condor_time_left(
    job_ad: Mapping[str, ClassAdValue], machine_ad: Mapping[str, ClassAdValue], now: float
) -> Optional[int]:
    """Seconds left from the job's run-time limit and the glidein's end, the smaller."""
    candidates: list[float] = []
    limit_s = _number(classad_get(job_ad, "MaxRuntime"))
    if limit_s is None:
        minutes = _number(classad_get(job_ad, "MaxWallTimeMins"))
        limit_s = None if minutes is None else minutes * 60
    started = _number(classad_get(job_ad, "JobCurrentStartDate")) or _number(
        classad_get(job_ad, "JobStartDate")
    )
    if limit_s is not None and limit_s > 0:
        candidates.append(limit_s - (now - started if started else 0.0))
    for key in ("GLIDEIN_ToDie", "GLIDEIN_ToRetire"):
        end = _number(classad_get(machine_ad, key))
        if end:
            candidates.append(end - now)
    return int(min(candidates)) if candidates else None


def parse_qstat_full(text: str) -> Optional[int]:
    """PBS/Torque ``qstat -f JOBID``: ``Walltime.Remaining``, else limit minus used."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(" = ")
        if sep:
            fields[key.strip()] = value.strip()
    if fields.get("Walltime.Remaining", "").isdigit():
        return int(fields["Walltime.Remaining"])
    limit = fields.get("Resource_List.walltime")
    if not limit:
        return None
    limit_s = parse_duration(limit)
    used_s = parse_duration(fields.get("resources_used.walltime", "0")) or 0
    return None if limit_s is None else limit_s - used_s


def parse_bjobs_time_left(text: str) -> Optional[int]:
    """LSF ``bjobs -noheader -o time_left JOBID``: ``H:MM`` plus a status letter, or ``-``."""
    fields = text.split()
    if not fields or fields[0] == "-":
        return None
    hours, sep, minutes = fields[0].partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit():
        raise ValueError(f"not a bjobs time_left: {text!r}")
    return int(hours) * 3600 + int(minutes) * 60


def mjf_time_left(
    job_features: Mapping[str, str], machine_features: Mapping[str, str], now: float
) -> Optional[int]:
    """WLCG machine/job features: job start + wall limit, and the machine's shutdown time."""
    candidates: list[float] = []
    limit, start = job_features.get("wall_limit_secs"), job_features.get("jobstart_secs")
    if limit and limit.strip().isdigit():
        started = float(start) if start and start.strip().isdigit() else now
        candidates.append(started + int(limit) - now)
    shutdown = machine_features.get("shutdowntime", "").strip()
    if shutdown.isdigit():
        candidates.append(int(shutdown) - now)
    return int(min(candidates)) if candidates else None
