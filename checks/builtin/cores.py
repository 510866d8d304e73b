"""Usable cores: CPU affinity, cgroup CPU quota and the batch system's allocation.

Advertises DIRAC's processor tags (``NProcessors`` and ``MultiProcessor`` when N > 1),
which is what multi-core jobs ask for in ``Tags``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import psutil

from checks.api import CheckContext, CheckResult, check
from checks.builtin.cgroup import read_limits
from checks.builtin.condor_ads import condor_cores
from checks.builtin.thresholds import format_number, number_option
from protocol import CheckStatus

_SLURM_COUNT = re.compile(r"^(\d+)(?:\(x(\d+)\))?$")


def expand_slurm_counts(text: str) -> list[int]:
    """Slurm's compressed per-node list, e.g. ``"72(x2),36"`` -> ``[72, 72, 36]``."""
    counts: list[int] = []
    for item in text.split(","):
        match = _SLURM_COUNT.match(item.strip())
        if match is None:
            raise ValueError(f"not a Slurm per-node count list: {text!r}")
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def slurm_cores(env: Mapping[str, str]) -> Optional[int]:
    """Cores Slurm allocated to this job on this node, if running under Slurm."""
    if env.get("SLURM_CPUS_ON_NODE", "").isdigit():
        return int(env["SLURM_CPUS_ON_NODE"])
    per_node = env.get("SLURM_JOB_CPUS_PER_NODE")
    if not per_node:
        return None
    counts = expand_slurm_counts(per_node)
    node_index = int(env.get("SLURM_NODEID", "0") or 0)
    return counts[node_index] if node_index < len(counts) else counts[0]


def usable_cores(affinity: int, quota_cores: Optional[float], batch_cores: Optional[int]) -> int:
    """The tightest of the limits; a fractional quota rounds down, but never below 1."""
    limits = [affinity]
    if quota_cores is not None:
        limits.append(math.floor(quota_cores))
    if batch_cores is not None:
        limits.append(batch_cores)
    return max(1, min(limits))


def processor_tags(cores: int) -> list[str]:
    """DIRAC's tags for a slot of ``cores`` cores."""
    return [f"{cores}Processors", "MultiProcessor"] if cores > 1 else []


def cpu_model(cpuinfo: str) -> str:
    """The CPU's name from ``/proc/cpuinfo`` (x86 "model name", others' equivalents)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "processor", "cpu model", "cpu"):
        value = fields.get(key, "")
        # On x86 "processor" is the CPU's index, not its name.
        if value and not value.isdigit():
            return value
    return ""


def _affinity() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@check("cores", fatal=True, timeout_s=5.0)
def cores(ctx: CheckContext) -> CheckResult:
    min_cores = number_option(ctx.options, "min_cores", 1, minimum=1)
    affinity = _affinity()
    quota = read_limits().cpu_cores
    batch = slurm_cores(os.environ)
    if batch is None:
        batch = condor_cores(os.environ)
    usable = usable_cores(affinity, quota, batch)
    try:
        model = cpu_model(Path("/proc/cpuinfo").read_text())
    except OSError:
        model = ""
    facts: dict[str, Any] = {
        "cores": usable,
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_affinity": affinity,
        "cpu_quota_cores": quota,
        "batch_cores": batch,
        "cpu_model": model,
    }
    limits = f"affinity {affinity}, cgroup quota {quota or 'none'}, batch {batch or 'none'}"
    if usable < min_cores:
        message = (
            f"{usable} usable cores, fewer than min_cores={format_number(min_cores)} ({limits})"
        )
        return CheckResult(CheckStatus.FAIL, message, facts)
    message = f"{usable} usable cores ({limits})"
    return CheckResult(CheckStatus.OK, message, facts, tuple(processor_tags(usable)))
