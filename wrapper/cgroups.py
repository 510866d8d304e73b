"""Optional hard limits for a job through a delegated cgroup v2 subtree.

The watchdog's psutil sampling works everywhere; a cgroup adds what sampling cannot: the
kernel refuses memory past ``memory.max`` and forks past ``pids.max`` at once, and every
process of the job stays in the cgroup however it forks or daemonizes.

It is used only where it can work without privileges: ``/sys/fs/cgroup`` (or wherever
``/proc/self/mountinfo`` says) is a cgroup2 file system, the process's own cgroup lists the
``memory`` and ``pids`` controllers and is writable by us (systemd ``Delegate=yes``, a
batch system's delegated job cgroup). Anything else (cgroup v1, hybrid mode, a read-only
or undelegated cgroup) is a logged decision to go without, never an error.

Layout, following the kernel's "no internal processes" rule: the wrapper's process moves
into a leaf ``<own>/gridpilot`` child, controllers are enabled in ``<own>``, and each job gets
``<own>/job_<id>_<pid>`` with its limits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)

MOUNTINFO = Path("/proc/self/mountinfo")
PROC_CGROUP = Path("/proc/self/cgroup")
NEEDED_CONTROLLERS = ("memory", "pids")
WRAPPER_LEAF = "gridpilot"


@dataclasses.dataclass(frozen=True)
class CgroupSupport:
    """Whether job cgroups can be made here and, if not, why."""

    parent: Optional[Path]
    """The delegated cgroup job cgroups are created in; None when not usable."""
    reason: str = ""

    @property
    def usable(self) -> bool:
        return self.parent is not None


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def cgroup2_mount(mountinfo_text: str) -> Optional[Path]:
    """Mount point of the cgroup2 file system in a ``/proc/<pid>/mountinfo`` text."""
    for line in mountinfo_text.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        fs_type = line.split(" - ", 1)[1].split()[0]
        if fs_type == "cgroup2":
            return Path(_unescape(fields[4]))
    return None


def own_cgroup(proc_cgroup_text: str) -> Optional[str]:
    """The unified-hierarchy path (``0::/path``) in a ``/proc/<pid>/cgroup`` text."""
    for line in proc_cgroup_text.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or "/"
    return None


def detect(mountinfo: Path = MOUNTINFO, proc_cgroup: Path = PROC_CGROUP) -> CgroupSupport:
    """Decide whether this process may create job cgroups; never raises."""
    try:
        mount = cgroup2_mount(mountinfo.read_text())
        relative = own_cgroup(proc_cgroup.read_text())
    except OSError as exc:
        return CgroupSupport(None, f"cannot read {exc.filename}: {exc.strerror}")
    if mount is None:
        return CgroupSupport(None, "no cgroup2 file system mounted (cgroup v1 or hybrid host)")
    if relative is None:
        return CgroupSupport(None, "this process has no cgroup v2 path")
    here = mount / relative.lstrip("/")
    try:
        controllers = (here / "cgroup.controllers").read_text().split()
    except OSError as exc:
        return CgroupSupport(None, f"cannot read {here}/cgroup.controllers: {exc.strerror}")
    missing = [name for name in NEEDED_CONTROLLERS if name not in controllers]
    if missing:
        return CgroupSupport(None, f"controllers not delegated to {here}: {', '.join(missing)}")
    writable = [here, here / "cgroup.procs", here / "cgroup.subtree_control"]
    if not all(os.access(path, os.W_OK) for path in writable):
        return CgroupSupport(None, f"{here} is not delegated to this user (not writable)")
    return CgroupSupport(here)


def enable(support: CgroupSupport, pid: int) -> CgroupSupport:
    """Move ``pid`` to a leaf and enable the controllers for job cgroups; never raises."""
    if support.parent is None:
        return support
    leaf = support.parent / WRAPPER_LEAF
    try:
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(f"{pid}\n")
        control = " ".join(f"+{name}" for name in NEEDED_CONTROLLERS)
        (support.parent / "cgroup.subtree_control").write_text(control + "\n")
    except OSError as exc:
        return CgroupSupport(None, f"cannot set up {support.parent}: {exc}")
    return support


@functools.lru_cache(maxsize=1)
def host_support() -> CgroupSupport:
    """This process's decision, made once and logged."""
    support = enable(detect(), os.getpid())
    if support.usable:
        logger.info("cgroup v2 hard limits: job cgroups under %s", support.parent)
    else:
        logger.info("cgroup v2 hard limits not used: %s", support.reason)
    return support


class JobCgroup:
    """One job's cgroup: limits written at creation, processes added, removed at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(
        cls, parent: Path, name: str, *, memory_bytes: int = 0, max_processes: int = 0
    ) -> JobCgroup:
        """Make ``parent/name`` with ``memory.max`` and ``pids.max`` (0: no limit)."""
        path = parent / name
        path.mkdir()
        group = cls(path)
        if memory_bytes > 0:
            group._write("memory.max", str(memory_bytes))
            # No swap: a job over its memory must be stopped, not slowed down for hours.
            # Best effort: the file is missing where swap is not accounted.
            with contextlib.suppress(OSError):
                group._write("memory.swap.max", "0")
        if max_processes > 0:
            group._write("pids.max", str(max_processes))
        return group

    def _write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value + "\n")

    def add(self, pid: int) -> None:
        """Move a process (and its later children) into the cgroup."""
        self._write("cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        """Processes now in the cgroup."""
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(word) for word in text.split() if word.isdigit()]

    def oom_kills(self) -> int:
        """How many processes the kernel killed for going over ``memory.max``."""
        try:
            text = (self.path / "memory.events").read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def kill(self) -> bool:
        """SIGKILL everything in the cgroup at once (``cgroup.kill``, Linux 5.14+)."""
        if not (self.path / "cgroup.kill").exists():
            return False
        try:
            self._write("cgroup.kill", "1")
        except OSError as exc:
            logger.warning("cgroup %s: kill failed: %s", self.path, exc)
            return False
        return True

    def remove(self) -> None:
        """Remove the (empty) cgroup; a cgroup still holding processes stays, logged."""
        with contextlib.suppress(FileNotFoundError):
            try:
                self.path.rmdir()
            except OSError as exc:
                logger.warning("cgroup %s not removed: %s", self.path, exc)


def for_payload(
    support: CgroupSupport, job_id: int, pid: int, *, memory_bytes: int, max_processes: int
) -> Optional[JobCgroup]:
    """A cgroup with the job's hard limits holding ``pid``, or None (logged) if none can be."""
    if support.parent is None:
        return None
    name = f"job_{job_id}_{pid}"
    try:
        group = JobCgroup.create(
            support.parent, name, memory_bytes=memory_bytes, max_processes=max_processes
        )
    except OSError as exc:
        logger.warning("job %d: no cgroup hard limits: %s", job_id, exc)
        return None
    try:
        group.add(pid)
    except OSError as exc:
        logger.warning("job %d: payload %d not moved to %s: %s", job_id, pid, group.path, exc)
        group.remove()
        return None
    logger.info("job %d: payload %d in cgroup %s", job_id, pid, group.path)
    return group
