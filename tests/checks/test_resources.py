"""Decisions of the cores and memory checks, from real inputs (env, cpuinfo, limits)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.builtin.cgroup import CgroupLimits
from checks.builtin.cores import (
    cpu_model,
    expand_slurm_counts,
    processor_tags,
    slurm_cores,
    usable_cores,
)
from checks.builtin.memory import effective_memory_mb, slurm_memory_mb
from checks.builtin.thresholds import number_option, threshold_status
from protocol import CheckStatus

MIB = 1 << 20


@pytest.mark.parametrize(
    ("affinity", "quota", "batch", "expected"),
    [
        (8, None, None, 8),
        (8, 2.0, None, 2),
        (8, 1.5, None, 1),
        (8, 0.5, None, 1),
        (16, None, 4, 4),
        (4, 32.0, 16, 4),
    ],
)
def test_usable_cores(affinity: int, quota: float | None, batch: int | None, expected: int) -> None:
    assert usable_cores(affinity, quota, batch) == expected


@given(
    st.integers(1, 512),
    st.none() | st.floats(0.01, 1024),
    st.none() | st.integers(1, 512),
)
def test_usable_cores_never_exceeds_any_limit(
    affinity: int, quota: float | None, batch: int | None
) -> None:
    cores = usable_cores(affinity, quota, batch)
    assert 1 <= cores <= affinity
    assert batch is None or cores <= batch
    assert quota is None or cores <= max(1, math.floor(quota))


def test_processor_tags_follow_dirac() -> None:
    assert processor_tags(1) == []
    assert processor_tags(8) == ["8Processors", "MultiProcessor"]


@pytest.mark.parametrize(
    ("text", "counts"),
    [("4", [4]), ("72(x2),36", [72, 72, 36]), ("2(x3)", [2, 2, 2])],
)
def test_expand_slurm_counts(text: str, counts: list[int]) -> None:
    assert expand_slurm_counts(text) == counts


@pytest.mark.parametrize("text", ["", "x", "4(x)", "4,(x2)"])
def test_expand_slurm_counts_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="Slurm"):
        expand_slurm_counts(text)


def test_slurm_cores_from_the_environment() -> None:
    assert slurm_cores({}) is None
    assert slurm_cores({"SLURM_CPUS_ON_NODE": "12", "SLURM_JOB_CPUS_PER_NODE": "4"}) == 12
    assert slurm_cores({"SLURM_JOB_CPUS_PER_NODE": "72(x2),36", "SLURM_NODEID": "2"}) == 36
    assert slurm_cores({"SLURM_JOB_CPUS_PER_NODE": "8(x2)"}) == 8


def test_slurm_memory_from_the_environment() -> None:
    assert slurm_memory_mb({}) is None
    assert slurm_memory_mb({"SLURM_MEM_PER_NODE": "16000"}) == 16000
    assert slurm_memory_mb({"SLURM_MEM_PER_CPU": "2000", "SLURM_CPUS_ON_NODE": "4"}) == 8000


X86_CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
"""
ARM_CPUINFO = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n"
POWER_CPUINFO = "processor\t: 0\ncpu\t\t: POWER9 (raw), altivec supported\n"


def test_cpu_model() -> None:
    assert cpu_model(X86_CPUINFO) == "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"
    assert cpu_model(POWER_CPUINFO) == "POWER9 (raw), altivec supported"
    assert cpu_model(ARM_CPUINFO) == ""


def test_memory_is_capped_by_cgroup_and_batch() -> None:
    node_total, node_available = 64_000 * MIB, 60_000 * MIB
    unlimited = CgroupLimits(version=2)
    assert effective_memory_mb(node_total, node_available, unlimited) == (64_000, 60_000)
    limited = CgroupLimits(version=2, memory_bytes=8_000 * MIB, memory_used_bytes=3_000 * MIB)
    assert effective_memory_mb(node_total, node_available, limited) == (8_000, 5_000)
    assert effective_memory_mb(node_total, node_available, unlimited, batch_mb=4_000) == (
        4_000,
        4_000,
    )


@given(st.floats(0, 1e6), st.floats(0, 1e6), st.floats(0, 1e6))
def test_threshold_status_orders_fail_warn_ok(value: float, fail: float, warn: float) -> None:
    status = threshold_status(value, fail_below=fail, warn_below=warn)
    assert (status is CheckStatus.FAIL) == (value < fail)
    assert status is not CheckStatus.OK or value >= warn


@pytest.mark.parametrize("value", ["lots", True, None, -1, float("nan"), [1]])
def test_number_option_refuses_non_numbers(value: object) -> None:
    with pytest.raises(ValueError, match="option min_free_mb="):
        number_option({"min_free_mb": value}, "min_free_mb", 1024)


def test_number_option_defaults_and_strings() -> None:
    assert number_option({}, "min_free_mb", 1024) == 1024.0
    assert number_option({"min_free_mb": "2048"}, "min_free_mb", 1024) == 2048.0
