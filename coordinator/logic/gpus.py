"""Which of a pilot's free GPUs a job gets: pure rules over ``protocol.GpuInfo``.

A GPU meets a job's GPU requirements when its memory is at least ``GPUMemoryMB``, its
compute capability at least ``MinGPUCapability`` (compared by numbers: ``8.6`` > ``8.0``,
``12.0`` > ``9.0``; an AMD GPU, whose capability is a gfx target, meets no minimum), and
its model contains one of ``GPUModel`` (case-insensitive; ``A100`` matches ``NVIDIA
A100-SXM4-80GB``). A job asking for N GPUs gets N that meet them, of one model when the
node has enough of one, and the least capable that do: bigger GPUs stay free for the jobs
that need them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Optional

from protocol import GpuInfo, version_key


def meets(gpu: GpuInfo, memory_mb: int, capability: str, models: Iterable[str]) -> bool:
    if memory_mb and gpu.memory_mb < memory_mb:
        return False
    wanted = version_key(capability)
    if wanted and version_key(gpu.capability) < wanted:
        return False
    names = [model.lower() for model in models]
    return not names or any(name in gpu.model.lower() for name in names)


def _smallest(gpu: GpuInfo) -> tuple[int, tuple[int, ...], str]:
    return (gpu.memory_mb, version_key(gpu.capability), gpu.id)


def choose(
    count: int,
    free: Sequence[GpuInfo],
    memory_mb: int = 0,
    capability: str = "",
    models: Iterable[str] = (),
) -> Optional[tuple[GpuInfo, ...]]:
    """``count`` GPUs of ``free`` for a job, or None when not enough meet its needs."""
    if count <= 0:
        return ()
    fitting = [gpu for gpu in free if meets(gpu, memory_mb, capability, list(models))]
    if len(fitting) < count:
        return None
    by_model: dict[tuple[str, str], list[GpuInfo]] = {}
    for gpu in fitting:
        by_model.setdefault((gpu.vendor, gpu.model), []).append(gpu)
    whole = [group for group in by_model.values() if len(group) >= count]
    pool = min(whole, key=lambda group: min(map(_smallest, group))) if whole else fitting
    return tuple(sorted(pool, key=_smallest)[:count])


def describe_needs(count: int, memory_mb: int, capability: str, models: Iterable[str]) -> str:
    """``2 GPU(s), >= 40000 MiB, capability >= 8.0, model A100``."""
    parts = [f"{count} GPU(s)"]
    if memory_mb:
        parts.append(f">= {memory_mb} MiB")
    if capability:
        parts.append(f"capability >= {capability}")
    names = sorted(models)
    if names:
        parts.append("model " + " or ".join(names))
    return ", ".join(parts)
