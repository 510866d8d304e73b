"""The watchdog's decisions, its measurements on real files and processes, and cgroup v2.

This machine has cgroup v1 only, so the cgroup v2 path cannot run for real here: the
detection is run against this host (and must say no, with its reason), and the parsing and
the writes are run against real file trees laid out as a delegated cgroup2 mount.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pilot.config import load_config
from wrapper import cgroups
from wrapper.usage import PidsSince, marked_processes, tree_bytes
from wrapper.watchdog import (
    GIB,
    MIB,
    JobLimits,
    Limit,
    LimitHit,
    Sample,
    StallClock,
    WatchdogPolicy,
    check,
)

CALM = Sample(
    wall_s=1.0,
    cpu_s=1.0,
    memory_bytes=MIB,
    processes=1,
    stdio_bytes=0,
    workdir_bytes=0,
    idle_s=0.0,
)


def test_job_values_get_the_grace_factors_and_the_margin() -> None:
    policy = WatchdogPolicy(wall_time_factor=1.1, cpu_time_factor=1.5, time_limit_margin_s=60)
    limits = JobLimits.for_job(policy, wall_time_s=3600, cpu_time_s=1000, memory_mb=2048)
    assert limits.wall_s == 3600 * 1.1 + 60
    assert limits.cpu_s == 1000 * 1.5 + 60
    assert limits.memory_bytes == 2 * GIB
    assert limits.processes == policy.max_processes
    assert limits.stdio_bytes == policy.max_stdio_bytes


def test_site_defaults_apply_only_where_the_job_says_nothing() -> None:
    policy = WatchdogPolicy(default_wall_time_s=100, default_cpu_time_s=50, default_max_ram_mb=512)
    none_given = JobLimits.for_job(policy, wall_time_s=None, cpu_time_s=None, memory_mb=0)
    assert (none_given.wall_s, none_given.cpu_s) == (100 * 1.1 + 60, 50 * 1.1 + 60)
    assert none_given.memory_bytes == 512 * MIB
    given_ = JobLimits.for_job(policy, wall_time_s=10, cpu_time_s=None, memory_mb=64)
    assert given_.wall_s == 10 * 1.1 + 60
    assert given_.memory_bytes == 64 * MIB


def test_no_job_value_and_no_default_means_no_limit() -> None:
    limits = JobLimits.for_job(WatchdogPolicy(), wall_time_s=None, cpu_time_s=None, memory_mb=0)
    assert (limits.wall_s, limits.cpu_s, limits.memory_bytes) == (0, 0, 0)
    endless = Sample(1e9, 1e9, 1000 * GIB, 1, 0, 0, 0.0)
    assert check(limits, endless) is None


def test_minor_statuses_name_the_limit_and_the_value_seen() -> None:
    memory = LimitHit(Limit.MEMORY, 2.3 * GIB, 2048 * MIB)
    assert memory.minor_status == "Memory limit exceeded: 2.3 GB > 2.0 GB"
    assert LimitHit(Limit.WALL, 65.2, 60).minor_status == "Wall time limit exceeded: 65 s > 60 s"
    assert LimitHit(Limit.CPU, 1.26, 1).minor_status == "CPU time limit exceeded: 1.3 s > 1.0 s"
    stalled = LimitHit(Limit.STALLED, 121, 120).minor_status
    assert stalled == "Job stalled: no CPU progress for 121 s (limit 120 s)"
    assert LimitHit(Limit.PROCESSES, 230, 200).minor_status == "Process limit exceeded: 230 > 200"
    disk = LimitHit(Limit.WORKDIR, 25.4 * MIB, 20 * MIB).minor_status
    assert disk == "Work dir size limit exceeded: 25.4 MB > 20.0 MB"
    out = LimitHit(Limit.OUTPUT, 1.5 * GIB, GIB).minor_status
    assert out == "Output size limit exceeded: 1.5 GB > 1.0 GB"
    oom = LimitHit(Limit.MEMORY, GIB, GIB, by_kernel=True).minor_status
    assert oom == "Memory limit exceeded: killed by the kernel at 1.0 GB"


def test_first_limit_in_order_wins() -> None:
    limits = JobLimits(wall_s=10, cpu_s=10, memory_bytes=MIB, processes=5)
    sample = Sample(11, 11, 2 * MIB, 6, 0, 0, 0.0)
    hit = check(limits, sample)
    assert hit is not None and hit.limit == Limit.MEMORY
    hit = check(limits, Sample(11, 11, MIB, 5, 0, 0, 0.0))
    assert hit is not None and hit.limit == Limit.CPU


_values = st.floats(min_value=0, max_value=1e12, allow_nan=False)
_limits = st.floats(min_value=0, max_value=1e12, allow_nan=False)


@given(st.lists(st.tuples(_values, _limits), min_size=7, max_size=7))
def test_a_limit_is_hit_exactly_when_a_value_is_over_a_set_limit(
    pairs: list[tuple[float, float]],
) -> None:
    seen = [value for value, _ in pairs]
    allowed = [limit for _, limit in pairs]
    limits = JobLimits(
        memory_bytes=int(allowed[0]),
        processes=int(allowed[1]),
        stdio_bytes=int(allowed[2]),
        workdir_bytes=int(allowed[3]),
        cpu_s=allowed[4],
        wall_s=allowed[5],
        stalled_after_s=allowed[6],
    )
    sample = Sample(
        memory_bytes=int(seen[0]),
        processes=int(seen[1]),
        stdio_bytes=int(seen[2]),
        workdir_bytes=int(seen[3]),
        cpu_s=seen[4],
        wall_s=seen[5],
        idle_s=seen[6],
    )
    ints = [0, 1, 2, 3]
    over = [
        (int(v) if i in ints else v) > (int(a) if i in ints else a) > 0
        for i, (v, a) in enumerate(zip(seen, allowed))
    ]
    hit = check(limits, sample)
    assert (hit is not None) == any(over)
    if hit is not None:
        assert hit.limit == list(Limit)[over.index(True)]
        assert hit.seen > hit.allowed


def test_stall_clock_counts_from_the_last_cpu_progress() -> None:
    clock = StallClock(now_s=0.0)
    assert clock.idle_s(cpu_s=0.0, now_s=5.0) == 5.0
    assert clock.idle_s(cpu_s=0.5, now_s=6.0) == 0.0
    assert clock.idle_s(cpu_s=0.5, now_s=9.0) == 3.0
    assert clock.idle_s(cpu_s=0.4, now_s=10.0) == 4.0  # a lower reading is no progress


def test_work_dir_size_counts_blocks_once_and_never_follows_links(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    data = os.urandom(MIB)
    (work / "sub" / "a.bin").write_bytes(data)
    os.link(work / "sub" / "a.bin", work / "hardlink.bin")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(os.urandom(4 * MIB))
    (work / "link").symlink_to(outside)
    (work / "dirlink").symlink_to(tmp_path)
    with open(work / "sparse.bin", "wb") as sparse:
        sparse.truncate(10 * GIB)  # 10 GB long, nothing on disk
    used = tree_bytes(work)
    assert MIB <= used < MIB + 256 * 1024
    assert tree_bytes(work, stop_above=1000) > 1000


def test_marked_processes_finds_the_jobs_processes_only(tmp_path: Path) -> None:
    code = "import time; time.sleep(30)"
    marker = {"GRIDPILOT_JOB_ID": "7", "GRIDPILOT_WORKDIR": str(tmp_path)}
    mine = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **marker})
    other_env = {**os.environ, **marker, "GRIDPILOT_WORKDIR": str(tmp_path / "other")}
    other = subprocess.Popen([sys.executable, "-c", code], env=other_env)
    try:
        found = {proc.pid for proc in marked_processes(marker)}
        assert mine.pid in found
        assert other.pid not in found
        assert os.getpid() not in found
    finally:
        for proc in (mine, other):
            proc.kill()
            proc.wait()


def test_marked_processes_since_a_root_skip_older_processes_only(tmp_path: Path) -> None:
    """The search after a payload's end looks at processes younger than its root alone:
    an older process carrying the marker is left out, a younger one (a daemon the payload
    started, say) is found; once pid numbers may have come round, everything is looked at."""
    code = "import time; time.sleep(30)"
    marker = {"GRIDPILOT_JOB_ID": "8", "GRIDPILOT_WORKDIR": str(tmp_path)}
    env = {**os.environ, **marker}
    older = subprocess.Popen([sys.executable, "-c", code], env=env)
    root = subprocess.Popen([sys.executable, "-c", code])
    younger = subprocess.Popen([sys.executable, "-c", code], env=env)
    now = [0.0]
    try:
        since = PidsSince(root.pid, clock=lambda: now[0])
        found = {proc.pid for proc in marked_processes(marker, since=since)}
        assert younger.pid in found
        assert older.pid not in found
        now[0] = 3600.0  # far past the time pids take to come round: no shortcut
        assert since.test() is None
        found = {proc.pid for proc in marked_processes(marker, since=since)}
        assert {older.pid, younger.pid} <= found
    finally:
        for proc in (older, root, younger):
            proc.kill()
            proc.wait()


def test_policy_comes_from_the_pilot_configuration(tmp_path: Path) -> None:
    env = {
        "GRIDPILOT_WALL_TIME_FACTOR": "1.5",
        "GRIDPILOT_MAX_PROCESSES": "99",
        "GRIDPILOT_DEFAULT_MAX_RAM_MB": "2000",
        "GRIDPILOT_USE_CGROUPS": "no",
    }
    cli = {"url": "http://127.0.0.1:1", "token": "t", "workdir": str(tmp_path)}
    policy = load_config(cli, env).wrapper.watchdog
    assert policy.wall_time_factor == 1.5
    assert policy.max_processes == 99
    assert policy.default_max_ram_mb == 2000
    assert policy.use_cgroups is False
    assert policy.stalled_after_s == WatchdogPolicy().stalled_after_s


# ------------------------------------------------------------------------- cgroup v2


def test_this_host_has_no_usable_cgroup_v2_and_says_why() -> None:
    support = cgroups.detect()
    mounts = Path("/proc/self/mountinfo").read_text()
    if " - cgroup2 " in mounts:
        # A cgroup2 host: whatever the answer, it must be a decision, not a crash.
        assert support.usable or support.reason
    else:
        assert not support.usable
        assert support.reason == "no cgroup2 file system mounted (cgroup v1 or hybrid host)"


MOUNTINFO_V2 = (
    "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
    "30 25 0:26 / {root} rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw,nsdelegate\n"
)
MOUNTINFO_V1 = "35 25 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"


def delegated_tree(tmp_path: Path, controllers: str = "cpu memory pids") -> tuple[Path, Path]:
    """A file tree laid out like a cgroup2 mount with a user's delegated cgroup."""
    root = tmp_path / "cgroup fs"
    own = root / "user.slice" / "user-1000.slice" / "pilot.service"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text(controllers + "\n")
    (own / "cgroup.procs").write_text("")
    (own / "cgroup.subtree_control").write_text("")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(MOUNTINFO_V2.format(root=str(root).replace(" ", "\\040")))
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("0::/user.slice/user-1000.slice/pilot.service\n")
    return mountinfo, proc_cgroup


def test_parsing_finds_the_cgroup2_mount_and_the_own_cgroup(tmp_path: Path) -> None:
    mounts = MOUNTINFO_V1 + MOUNTINFO_V2.format(root="/sys/fs/cgroup/unified\\040x")
    assert cgroups.cgroup2_mount(mounts) == Path("/sys/fs/cgroup/unified x")
    assert cgroups.cgroup2_mount(MOUNTINFO_V1) is None
    assert cgroups.own_cgroup("4:memory:/a\n0::/user.slice/x\n") == "/user.slice/x"
    assert cgroups.own_cgroup("4:memory:/a\n") is None


def test_delegated_cgroup_is_used_and_prepared(tmp_path: Path) -> None:
    mountinfo, proc_cgroup = delegated_tree(tmp_path)
    support = cgroups.detect(mountinfo, proc_cgroup)
    own = tmp_path / "cgroup fs" / "user.slice" / "user-1000.slice" / "pilot.service"
    assert support.usable and support.parent == own
    assert cgroups.enable(support, 4242) == support
    assert (own / "gridpilot" / "cgroup.procs").read_text() == "4242\n"
    assert (own / "cgroup.subtree_control").read_text() == "+memory +pids\n"


def test_missing_controllers_or_v1_only_are_refused_with_a_reason(tmp_path: Path) -> None:
    mountinfo, proc_cgroup = delegated_tree(tmp_path, controllers="cpu io")
    support = cgroups.detect(mountinfo, proc_cgroup)
    assert not support.usable
    assert support.reason.startswith("controllers not delegated to ")
    assert support.reason.endswith(": memory, pids")
    mountinfo.write_text(MOUNTINFO_V1)
    assert "cgroup v1" in cgroups.detect(mountinfo, proc_cgroup).reason
    missing = cgroups.detect(tmp_path / "nope", proc_cgroup)
    assert missing.reason.startswith("cannot read ")


def test_job_cgroup_gets_its_limits_and_reads_the_kernels_files(tmp_path: Path) -> None:
    parent = tmp_path / "delegated"
    parent.mkdir()
    group = cgroups.JobCgroup.create(parent, "job_7_100", memory_bytes=GIB, max_processes=64)
    assert (group.path / "memory.max").read_text() == f"{GIB}\n"
    assert (group.path / "memory.swap.max").read_text() == "0\n"
    assert (group.path / "pids.max").read_text() == "64\n"
    group.add(100)
    assert group.pids() == [100]
    (group.path / "cgroup.procs").write_text("100\n101\n")
    assert group.pids() == [100, 101]
    assert group.oom_kills() == 0
    (group.path / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    assert group.oom_kills() == 1
    assert not group.kill()  # no cgroup.kill file: a kernel older than 5.14
    (group.path / "cgroup.kill").write_text("")
    assert group.kill()
    assert (group.path / "cgroup.kill").read_text() == "1\n"


def test_unlimited_job_cgroup_writes_no_limit_files(tmp_path: Path) -> None:
    group = cgroups.JobCgroup.create(tmp_path, "job_8_1")
    assert sorted(p.name for p in group.path.iterdir()) == []
    group.remove()
    assert not group.path.exists()


def test_payload_cgroup_is_made_only_where_supported(tmp_path: Path) -> None:
    supported = cgroups.CgroupSupport(tmp_path)
    group = cgroups.for_payload(supported, 7, 4321, memory_bytes=MIB, max_processes=10)
    assert group is not None and group.path == tmp_path / "job_7_4321"
    assert group.pids() == [4321]
    assert (group.path / "memory.max").read_text() == f"{MIB}\n"
    unsupported = cgroups.CgroupSupport(None, "no cgroup2 file system mounted")
    assert cgroups.for_payload(unsupported, 8, 1, memory_bytes=MIB, max_processes=10) is None
    taken = cgroups.for_payload(supported, 7, 4321, memory_bytes=MIB, max_processes=10)
    assert taken is None  # the name exists: refused, logged, the job runs without
