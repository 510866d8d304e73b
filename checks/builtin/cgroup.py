"""CPU and memory limits of this process's cgroup (v2, or v1 on older nodes).

Batch systems (Slurm, HTCondor) and container runtimes confine a job with cgroups, so the
node's totals overstate what a pilot may use. Parsers take file contents and the reader
takes the mount root as a parameter, so both can be tested on real files in a tmp dir.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable, Optional, TypeVar

logger = logging.getLogger(__name__)

N = TypeVar("N", int, float)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")

_V1_UNLIMITED_BYTES = 1 << 62
"""cgroup v1 reports "no limit" as a huge page-aligned number near 2**63."""


@dataclasses.dataclass(frozen=True)
class CgroupLimits:
    """What the cgroup hierarchy allows; None means no limit found."""

    version: int
    """2 (unified), 1 (legacy controllers) or 0 (no cgroup filesystem found)."""
    cpu_cores: Optional[float] = None
    memory_bytes: Optional[int] = None
    memory_used_bytes: Optional[int] = None
    """Memory in use minus reclaimable inactive page cache (the "working set")."""


def parse_cpu_max(text: str) -> Optional[float]:
    """cgroup v2 ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD") -> cores, None for no limit."""
    fields = text.split()
    if len(fields) not in (1, 2):
        raise ValueError(f"cpu.max: expected 'QUOTA PERIOD', got {text!r}")
    if fields[0] == "max":
        return None
    period_us = int(fields[1]) if len(fields) == 2 else 100000
    return _cores(int(fields[0]), period_us)


def parse_cfs(quota_text: str, period_text: str) -> Optional[float]:
    """cgroup v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` -> cores, None for -1."""
    quota_us = int(quota_text.strip())
    if quota_us < 0:
        return None
    return _cores(quota_us, int(period_text.strip()))


def _cores(quota_us: int, period_us: int) -> float:
    if quota_us <= 0 or period_us <= 0:
        raise ValueError(f"CPU quota {quota_us}/{period_us} is not positive")
    return quota_us / period_us


def parse_memory_max(text: str) -> Optional[int]:
    """cgroup v2 ``memory.max`` or v1 ``memory.limit_in_bytes`` -> bytes, None for no limit."""
    value = text.strip()
    if value == "max":
        return None
    limit_bytes = int(value)
    return None if limit_bytes >= _V1_UNLIMITED_BYTES else limit_bytes


def parse_memory_stat(text: str) -> dict[str, int]:
    """``memory.stat`` lines "key value" -> dict; unparsable lines are skipped."""
    stats: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            stats[key] = int(value)
    return stats


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/self/cgroup`` -> {controller: path}; the v2 entry is under key ""."""
    memberships: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(","):
            memberships[controller.replace("name=", "")] = parts[2]
    return memberships


def read_limits(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> CgroupLimits:
    """The effective limits for this process: the tightest along its cgroup's ancestry."""
    try:
        memberships = parse_proc_cgroup(proc_cgroup.read_text())
    except OSError:
        memberships = {}
    if (root / "cgroup.controllers").is_file():
        chain = _ancestry(root, memberships.get("", "/"))
        return CgroupLimits(
            version=2,
            cpu_cores=_tightest(chain, lambda d: parse_cpu_max(_read(d, "cpu.max"))),
            memory_bytes=_tightest(chain, lambda d: parse_memory_max(_read(d, "memory.max"))),
            memory_used_bytes=_working_set(chain[0], "memory.current", "inactive_file"),
        )
    cpu_mount = root / "cpu" if (root / "cpu").is_dir() else root / "cpu,cpuacct"
    memory_mount = root / "memory"
    if not cpu_mount.is_dir() and not memory_mount.is_dir():
        return CgroupLimits(version=0)
    cpu_chain = _ancestry(cpu_mount, memberships.get("cpu", "/"))
    memory_chain = _ancestry(memory_mount, memberships.get("memory", "/"))
    return CgroupLimits(
        version=1,
        cpu_cores=_tightest(
            cpu_chain,
            lambda d: parse_cfs(_read(d, "cpu.cfs_quota_us"), _read(d, "cpu.cfs_period_us")),
        ),
        memory_bytes=_tightest(
            memory_chain, lambda d: parse_memory_max(_read(d, "memory.limit_in_bytes"))
        ),
        memory_used_bytes=_working_set(
            memory_chain[0], "memory.usage_in_bytes", "total_inactive_file"
        ),
    )


def _read(directory: Path, filename: str) -> str:
    return (directory / filename).read_text()


def _ancestry(mount: Path, cgroup_path: str) -> list[Path]:
    """The cgroup's directory and its parents up to the mount, innermost first."""
    leaf = mount / cgroup_path.lstrip("/")
    # Inside a container the path in /proc names the host's hierarchy; the mount is ours.
    if not leaf.is_dir():
        return [mount]
    chain = [leaf]
    while chain[-1] != mount and mount in chain[-1].parents:
        chain.append(chain[-1].parent)
    return chain


def _tightest(chain: list[Path], read: Callable[[Path], Optional[N]]) -> Optional[N]:
    limits: list[N] = []
    for directory in chain:
        try:
            limit = read(directory)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable cgroup limit in %s: %s", directory, exc)
            continue
        if limit is not None:
            limits.append(limit)
    return min(limits) if limits else None


def _working_set(directory: Path, usage_file: str, inactive_key: str) -> Optional[int]:
    try:
        usage_bytes = int((directory / usage_file).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        stats = parse_memory_stat((directory / "memory.stat").read_text())
    except OSError:
        stats = {}
    return max(0, usage_bytes - stats.get(inactive_key, 0))
