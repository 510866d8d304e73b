"""How a payload is run: the spec, the result, the runtime protocol, the running tree.

A runtime (``ContainerRuntime``: plain, bubblewrap, Apptainer; ``wrapper.selection`` picks
one) turns a ``RunSpec`` into a host process started in a new session, and hands back a
``RunningPayload`` (container runtimes subclass it to tell their own failures from the
payload's, see ``ContainerFault``). ``RunningPayload`` does not care how the process was made:
it reaps it, samples CPU and memory over the whole process tree with psutil, and kills that
tree (TERM, grace, KILL): descendants, the process group (orphans included), and processes
that left the group if they were seen in a sample, are still below the payload, or a
finder added with ``also_track`` returns them (the watchdog's searches by environment and
cgroup). When the payload ends, whatever it left running is killed the same way.

Exit codes: a payload ended by signal N has ``RunResult.exit_code`` None and
``RunResult.signal`` N; ``RunningPayload.poll``/``wait`` and the job's reported exit code
use the shell's convention, 128 + N.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import os
import resource
import select
import signal as signals
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Optional, Protocol

import psutil

from wrapper.devices import GpuDevice
from wrapper.errors import RuntimeFailure
from wrapper.usage import PidsSince, process_ids

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.05
SIGNAL_EXIT_BASE = 128
"""A payload killed by signal N is reported with exit code 128 + N, as a shell does."""


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything a runtime needs to start one payload."""

    argv: list[str]
    cwd: Path
    env: Mapping[str, str]
    """The payload's whole environment: the caller builds it, nothing is inherited."""
    stdout_path: Path
    stderr_path: Path
    cores: int = 1
    image: str = ""
    """Container image; a runtime that cannot run images refuses a spec that names one."""
    gpu: bool = False
    """The job asked for a GPU (its ``Tags``) or was given some (``gpus``)."""
    network: bool = True
    """Whether a container shares the node's network (plain execution always does)."""
    user: Optional[int] = None
    """Run the payload (and a container runtime) as this uid, with the same number as gid
    and no other groups: a pilot running as root gives each job its own identity."""
    gpus: tuple[GpuDevice, ...] = ()
    """The GPUs given to the job: the only ones its container shows."""
    cpus: tuple[int, ...] = ()
    """CPU ids the payload is pinned to (empty: not pinned)."""


@dataclasses.dataclass(frozen=True)
class RunResult:
    """How a payload ended and what it used."""

    exit_code: Optional[int]
    """None when a signal ended the payload."""
    signal: Optional[int]
    wall_s: float
    cpu_s: float
    """Whole tree: sampled, or the kernel's count for the payload and what it waited for."""
    max_rss_bytes: int
    """Highest sampled sum of resident memory over the tree (0 if it ended unsampled)."""
    killed_reason: str = ""
    infrastructure_error: str = ""
    container_fault: str = ""
    """``ContainerFault`` value when ``infrastructure_error`` is the container runtime's own."""

    @property
    def shell_exit_code(self) -> Optional[int]:
        """The exit code, or 128 + signal for a payload ended by a signal."""
        if self.signal is not None:
            return SIGNAL_EXIT_BASE + self.signal
        return self.exit_code


class ContainerFault(str, enum.Enum):
    """Whose failure a container runtime's own error is."""

    IMAGE = "image"
    """The image is missing, unreadable or unusable: this job's image, not the runtime."""
    RUNTIME = "runtime"
    """The runtime failed (bind, namespace, its own error): suspect on this node."""


@dataclasses.dataclass(frozen=True)
class ResourceUsage:
    """One sample over the payload's process tree."""

    cpu_s: float
    rss_bytes: int
    processes: int = 0
    """Live processes in the tree at the time of the sample."""


ProcessFinder = Callable[[], list[psutil.Process]]
"""Finds payload processes the tree walk cannot see (e.g. double-forked daemons)."""


class ContainerRuntime(Protocol):
    """A way to run a payload (plain, Apptainer, bubblewrap, ...)."""

    name: str

    def available(self) -> bool:
        """Whether this runtime can be used on this node now."""
        ...

    def start(self, spec: RunSpec) -> RunningPayload:
        """Start the payload; raise ``PayloadStartError`` or ``RuntimeFailure``."""
        ...


class RunningPayload:
    """A started payload: the root process and every descendant seen so far.

    The root is not reaped until ``finish``: while it is a zombie its pid, which is also
    its process group id, cannot be reused, so signalling the group stays safe.
    ``poll``, ``wait`` and ``finish`` belong to the thread that runs the job; ``sample``
    and ``kill_tree`` may be called from any thread.
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self.pid = process.pid
        self._started_s = time.monotonic()
        self._ended_s: Optional[float] = None
        self._exit_code: Optional[int] = None
        self._signal: Optional[int] = None
        self._lock = threading.RLock()
        self._root: Optional[psutil.Process] = _psutil_process(process.pid)
        self.pids_since = PidsSince(process.pid)
        """The pids its processes can hold: searches over the node's processes skip others."""
        self._exit_fd = _open_pidfd(process.pid)
        self._known: dict[int, psutil.Process] = {}
        self._finders: list[ProcessFinder] = []
        self._cpu_s = 0.0
        self._max_rss_bytes = 0
        self._killed_reason = ""
        self._lost_status = False
        self._result: Optional[RunResult] = None

    def poll(self) -> Optional[int]:
        """None while the payload runs, then its exit code (128 + N for signal N)."""
        with self._lock:
            if self._exit_code is None:
                self._check_exit()
            return self._exit_code

    def wait(self, timeout_s: Optional[float] = None) -> Optional[int]:
        """Wait for the payload to end; None if it still runs after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            code = self.poll()
            if code is not None:
                return code
            if deadline is not None and time.monotonic() >= deadline:
                return None
            remaining = POLL_INTERVAL_S if deadline is None else deadline - time.monotonic()
            self._sleep_until_exit(max(0.0, min(POLL_INTERVAL_S, remaining)))

    def _sleep_until_exit(self, timeout_s: float) -> None:
        """Sleep ``timeout_s``, waking as soon as the root exits when a pidfd tells us.

        Without it a short payload's end is seen up to a poll interval late (50 ms on every
        bubblewrap start, measured by bench/containers.py).
        """
        fd = self._exit_fd
        if fd is None:
            time.sleep(timeout_s)
            return
        # poll, not select: a pilot with many slots may hold descriptors above select's 1024.
        waiter = select.poll()
        waiter.register(fd, select.POLLIN)
        waiter.poll(timeout_s * 1000)

    def _check_exit(self) -> None:
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        try:
            info = os.waitid(os.P_PID, self.pid, flags)
        except ChildProcessError:
            logger.error("payload %d was reaped elsewhere; its exit status is lost", self.pid)
            self._lost_status, self._exit_code, self._ended_s = True, 255, time.monotonic()
            return
        if info is None or info.si_pid == 0:
            return
        self._ended_s = time.monotonic()
        if info.si_code == os.CLD_EXITED:
            self._exit_code = info.si_status
        else:
            self._signal = info.si_status
            self._exit_code = SIGNAL_EXIT_BASE + info.si_status

    def also_track(self, finder: ProcessFinder) -> None:
        """Treat what ``finder`` returns as part of the payload's tree.

        Finders may be costly (a scan of every process): they run on each kill and on
        ``processes``; what they found is then remembered and sampled like the rest.
        """
        with self._lock:
            self._finders.append(finder)

    def processes(self) -> list[psutil.Process]:
        """The payload's live processes now (root, descendants, group, found, seen before)."""
        with self._lock:
            return [proc for proc in self._tree(with_group=True) if _is_live(proc)]

    def _tree(self, *, with_group: bool = False) -> list[psutil.Process]:
        """Live processes of the payload: root, descendants, earlier-seen ones, group."""
        procs: dict[int, psutil.Process] = {}
        for finder in self._finders if with_group else ():
            for proc in finder():
                procs.setdefault(proc.pid, proc)
        if self._root is not None and self._exit_code is None:
            procs[self.pid] = self._root
            try:
                for child in self._root.children(recursive=True):
                    procs.setdefault(child.pid, child)
            except psutil.Error:
                pass
        if with_group:
            for proc in _group_members(self.pid, self.pids_since):
                procs.setdefault(proc.pid, proc)
        for pid, proc in list(self._known.items()):
            if pid in procs:
                continue
            if proc.is_running():
                procs[pid] = proc
            else:
                del self._known[pid]
        for pid, proc in procs.items():
            if pid != self.pid:
                self._known.setdefault(pid, proc)
        return list(procs.values())

    def sample(self) -> ResourceUsage:
        """CPU seconds (never decreasing) and resident bytes of the payload's tree now."""
        with self._lock:
            cpu_s, rss_bytes, count = 0.0, 0, 0
            for proc in self._tree():
                try:
                    with proc.oneshot():
                        times = proc.cpu_times()
                        rss_bytes += proc.memory_info().rss
                except psutil.Error:
                    continue
                count += 1
                # children_* hold descendants already waited for, so nothing counts twice.
                cpu_s += times.user + times.system + times.children_user + times.children_system
            self._cpu_s = max(self._cpu_s, cpu_s)
            self._max_rss_bytes = max(self._max_rss_bytes, rss_bytes)
            return ResourceUsage(cpu_s=self._cpu_s, rss_bytes=rss_bytes, processes=count)

    def kill_tree(self, reason: str, grace_s: float) -> None:
        """SIGTERM the whole tree and its process group, wait ``grace_s``, then SIGKILL."""
        with self._lock:
            if not self._killed_reason:
                self._killed_reason = reason
        logger.info("killing payload %d (%s), grace %.1f s", self.pid, reason, grace_s)
        self._terminate(grace_s)

    def _terminate(self, grace_s: float) -> None:
        self._signal_tree(signals.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self._any_alive() and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)
        # Repeat: a process may fork between our listing the tree and signalling it.
        for _ in range(5):
            if not self._any_alive():
                return
            self._signal_tree(signals.SIGKILL)
            time.sleep(POLL_INTERVAL_S)
        if self._any_alive():
            logger.error("payload %d: processes survived SIGKILL", self.pid)

    def _signal_tree(self, signum: int) -> None:
        # Under the lock so that ``finish`` cannot reap the leader (freeing its pid, which is
        # the group id) between our check and the signal.
        with self._lock:
            if self._result is not None:
                return
            procs = self._tree(with_group=True)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signum)
            for proc in procs:
                try:
                    proc.send_signal(signum)
                except psutil.Error:
                    continue

    def _any_alive(self) -> bool:
        if self.poll() is None:
            return True
        with self._lock:
            procs = self._tree(with_group=True)
        return any(_is_live(proc) for proc in procs if proc.pid != self.pid)

    def finish(self, grace_s: float) -> RunResult:
        """Kill what the payload left running, reap it and say how it ended.

        Call after ``wait`` returned an exit code; later calls return the same result.
        """
        if self._result is not None:
            return self._result
        if self.poll() is None:
            raise RuntimeFailure(f"payload {self.pid} has not ended yet")
        if self._any_alive():
            logger.info("payload %d ended, killing the processes it left", self.pid)
            self._terminate(grace_s)
        with self._lock:
            rusage = None
            if not self._lost_status:
                _, _, rusage = os.wait4(self.pid, 0)
                # Tell Popen the child is gone so it never waits for a (reused) pid itself.
                self._process.returncode = self._exit_code
            self._close_exit_fd()
            self._result = self._build_result(rusage)
            return self._result

    def _close_exit_fd(self) -> None:
        fd, self._exit_fd = self._exit_fd, None
        if fd is not None:
            os.close(fd)

    def _build_result(self, rusage: Optional[resource.struct_rusage]) -> RunResult:
        with self._lock:
            code = 255 if self._exit_code is None else self._exit_code
            ended_s = time.monotonic() if self._ended_s is None else self._ended_s
            cpu_s, max_rss_bytes, signal = self._cpu_s, self._max_rss_bytes, self._signal
        # Only CPU comes from rusage: its ru_maxrss keeps the high-water mark of the memory
        # the child shared with the wrapper before exec, so memory is from samples alone.
        if rusage is not None:
            cpu_s = max(cpu_s, rusage.ru_utime + rusage.ru_stime)
        return RunResult(
            exit_code=None if signal is not None else code,
            signal=signal,
            wall_s=ended_s - self._started_s,
            cpu_s=cpu_s,
            max_rss_bytes=max_rss_bytes,
            killed_reason=self._killed_reason,
            infrastructure_error="payload exit status lost" if self._lost_status else "",
        )


def _open_pidfd(pid: int) -> Optional[int]:
    """A descriptor readable once ``pid`` exits (Linux >= 5.3); None where unsupported."""
    open_pidfd = getattr(os, "pidfd_open", None)
    if open_pidfd is None:
        return None
    try:
        fd: int = open_pidfd(pid)
    except OSError:  # old kernel, or a seccomp filter refusing the call: poll instead
        return None
    os.set_inheritable(fd, False)
    return fd


def _psutil_process(pid: int) -> Optional[psutil.Process]:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _is_live(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _group_members(pgid: int, since: PidsSince) -> list[psutil.Process]:
    """Processes of a process group, including orphans never seen below the payload (all
    younger than its leader, ``since``'s root)."""
    members = []
    for pid in process_ids(since.test()):
        try:
            if pid != pgid and os.getpgid(pid) == pgid:
                members.append(psutil.Process(pid))
        except (OSError, psutil.Error):
            continue
    return members
