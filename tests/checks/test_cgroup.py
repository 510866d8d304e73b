"""cgroup limits read from real files laid out like /sys/fs/cgroup in a tmp dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.builtin.cgroup import (
    CgroupLimits,
    parse_cpu_max,
    parse_memory_max,
    parse_proc_cgroup,
    read_limits,
)

GIB = 1 << 30
MIB = 1 << 20


def _write(root: Path, files: dict[str, str]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def _proc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "cores"),
    [("200000 100000", 2.0), ("max 100000", None), ("150000 100000\n", 1.5), ("50000", 0.5)],
)
def test_parse_cpu_max(text: str, cores: float | None) -> None:
    assert parse_cpu_max(text) == cores


@pytest.mark.parametrize("text", ["", "a b", "0 100000", "100000 0", "1 2 3"])
def test_parse_cpu_max_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cpu_max(text)


@given(st.integers(1, 10**9), st.integers(1, 10**7))
def test_cpu_max_is_quota_over_period(quota_us: int, period_us: int) -> None:
    assert parse_cpu_max(f"{quota_us} {period_us}\n") == quota_us / period_us


def test_parse_memory_max_knows_both_spellings_of_no_limit() -> None:
    assert parse_memory_max("max\n") is None
    assert parse_memory_max("9223372036854771712\n") is None
    assert parse_memory_max("2147483648\n") == 2 * GIB


def test_parse_proc_cgroup_v1_and_v2_lines() -> None:
    text = "12:cpu,cpuacct:/slurm/job_7\n4:memory:/slurm/job_7\n1:name=systemd:/x\n0::/user.slice\n"
    assert parse_proc_cgroup(text) == {
        "cpu": "/slurm/job_7",
        "cpuacct": "/slurm/job_7",
        "memory": "/slurm/job_7",
        "systemd": "/x",
        "": "/user.slice",
    }


def test_v2_tightest_limit_along_the_ancestry_wins(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(
        root,
        {
            "cgroup.controllers": "cpu memory\n",
            "system.slice/slurmstepd.scope/cpu.max": "max 100000\n",
            "system.slice/slurmstepd.scope/job_42/cpu.max": "200000 100000\n",
            "system.slice/slurmstepd.scope/job_42/step_0/cpu.max": "400000 100000\n",
            "system.slice/slurmstepd.scope/job_42/memory.max": f"{4 * GIB}\n",
            "system.slice/slurmstepd.scope/job_42/step_0/memory.max": "max\n",
            "system.slice/slurmstepd.scope/job_42/step_0/memory.current": f"{600 * MIB}\n",
            "system.slice/slurmstepd.scope/job_42/step_0/memory.stat": (
                f"anon {400 * MIB}\ninactive_file {100 * MIB}\nactive_file 0\n"
            ),
        },
    )
    proc = _proc(tmp_path, "0::/system.slice/slurmstepd.scope/job_42/step_0\n")
    assert read_limits(root, proc) == CgroupLimits(
        version=2, cpu_cores=2.0, memory_bytes=4 * GIB, memory_used_bytes=500 * MIB
    )


def test_v2_without_limits(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root, {"cgroup.controllers": "cpu\n", "user.slice/cpu.max": "max 100000\n"})
    proc = _proc(tmp_path, "0::/user.slice\n")
    assert read_limits(root, proc) == CgroupLimits(version=2)


def test_v2_inside_a_container_uses_the_mounted_root(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root, {"cgroup.controllers": "cpu\n", "cpu.max": "300000 100000\n"})
    proc = _proc(tmp_path, "0::/kubepods/burstable/pod1234/abc\n")
    assert read_limits(root, proc).cpu_cores == 3.0


def test_v1_controllers(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    job = "slurm/uid_1000/job_7"
    _write(
        root,
        {
            "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            f"cpu,cpuacct/{job}/cpu.cfs_quota_us": "400000\n",
            f"cpu,cpuacct/{job}/cpu.cfs_period_us": "100000\n",
            "memory/memory.limit_in_bytes": "9223372036854771712\n",
            f"memory/{job}/memory.limit_in_bytes": f"{8 * GIB}\n",
            f"memory/{job}/memory.usage_in_bytes": f"{GIB}\n",
            f"memory/{job}/memory.stat": f"cache 0\ntotal_inactive_file {256 * MIB}\n",
        },
    )
    proc = _proc(tmp_path, f"5:cpu,cpuacct:/{job}\n4:memory:/{job}\n")
    assert read_limits(root, proc) == CgroupLimits(
        version=1, cpu_cores=4.0, memory_bytes=8 * GIB, memory_used_bytes=768 * MIB
    )


def test_unreadable_limit_is_ignored_not_fatal(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root, {"cgroup.controllers": "cpu\n", "cpu.max": "garbage\n", "memory.max": "max"})
    assert read_limits(root, _proc(tmp_path, "0::/\n")) == CgroupLimits(version=2)


def test_no_cgroup_filesystem(tmp_path: Path) -> None:
    assert read_limits(tmp_path / "none", tmp_path / "no-proc") == CgroupLimits(version=0)
