"""Memory the pilot may use: the node's, capped by the cgroup and the batch allocation."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Optional

import psutil

from checks.api import CheckContext, CheckResult, check
from checks.builtin.cgroup import CgroupLimits, read_limits
from checks.builtin.condor_ads import condor_memory_mb
from checks.builtin.thresholds import format_number, number_option, threshold_status
from protocol import CheckStatus

MIB = 1024 * 1024


def slurm_memory_mb(env: Mapping[str, str]) -> Optional[int]:
    """Memory Slurm allocated on this node (``--mem`` or ``--mem-per-cpu`` x cores), in MB."""
    per_node = env.get("SLURM_MEM_PER_NODE", "")
    if per_node.isdigit():
        return int(per_node)
    per_cpu, cpus = env.get("SLURM_MEM_PER_CPU", ""), env.get("SLURM_CPUS_ON_NODE", "")
    if per_cpu.isdigit() and cpus.isdigit():
        return int(per_cpu) * int(cpus)
    return None


def effective_memory_mb(
    total_bytes: int,
    available_bytes: int,
    limits: CgroupLimits,
    batch_mb: Optional[int] = None,
) -> tuple[int, int]:
    """(usable memory, available memory) in MB after cgroup and batch limits."""
    total, available = total_bytes, available_bytes
    if limits.memory_bytes is not None:
        total = min(total, limits.memory_bytes)
        used = limits.memory_used_bytes or 0
        available = min(available, max(0, limits.memory_bytes - used))
    if batch_mb is not None:
        total = min(total, batch_mb * MIB)
        available = min(available, total)
    return total // MIB, available // MIB


@check("memory", fatal=True, timeout_s=5.0, interval_s=300.0)
def memory(ctx: CheckContext) -> CheckResult:
    fail_below = number_option(ctx.options, "min_available_mb", 512)
    warn_below = number_option(ctx.options, "warn_available_mb", 1024)
    node = psutil.virtual_memory()
    limits = read_limits()
    batch_mb = slurm_memory_mb(os.environ)
    if batch_mb is None:
        batch_mb = condor_memory_mb(os.environ)
    memory_mb, available_mb = effective_memory_mb(node.total, node.available, limits, batch_mb)
    facts: dict[str, Any] = {
        "memory_mb": memory_mb,
        "memory_available_mb": available_mb,
        "memory_node_mb": node.total // MIB,
        "memory_limit_mb": None if limits.memory_bytes is None else limits.memory_bytes // MIB,
        "batch_memory_mb": batch_mb,
    }
    status = threshold_status(available_mb, fail_below=fail_below, warn_below=warn_below)
    message = f"{available_mb} MB available of {memory_mb} MB"
    if status is not CheckStatus.OK:
        threshold = fail_below if status is CheckStatus.FAIL else warn_below
        message += f", below {format_number(threshold)} MB"
    return CheckResult(status, message, facts)
