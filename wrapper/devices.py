"""What of the node one payload gets: its cores and its GPUs, and how it is told and held
to them.

A multi-slot pilot splits its node between its jobs (``pilot.slots``); each job's share is
an ``Allocation``. The payload is told its cores through the variables threaded libraries
read (``OMP_NUM_THREADS`` and the like, as HTCondor sets them), ``NSLOTS`` (SGE's) and
``GRIDPILOT_CORES``, and is pinned to its CPUs (the payload inherits the starting thread's
CPU affinity, in every runtime). It sees its GPUs only: ``CUDA_VISIBLE_DEVICES`` /
``ROCR_VISIBLE_DEVICES`` name them (empty for a job given none: no GPU at all), bubblewrap
binds their device files alone, Apptainer gets ``--nv`` / ``--rocm`` only for a job that has
GPUs. Plain execution cannot hide the node's device files: there the variables are all
there is.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Callable, Optional

logger = logging.getLogger(__name__)

CPU_SETSIZE = 1024
"""CPUs in glibc's ``cpu_set_t``: ``_affinity_setter`` covers those ids."""

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "JULIA_NUM_THREADS",
    "GOMAXPROCS",
    "TF_NUM_INTRAOP_THREADS",
    "ROOT_MAX_THREADS",
)
"""Thread counts the common runtimes and math libraries read; a job's own
``ExecutionEnvironment`` value wins."""
CORE_VARIABLES = ("NSLOTS", "GRIDPILOT_CORES")
GPU_VARIABLES = {"nvidia": "CUDA_VISIBLE_DEVICES", "amd": "ROCR_VISIBLE_DEVICES"}
VENDORS = tuple(GPU_VARIABLES)


@dataclasses.dataclass(frozen=True)
class GpuDevice:
    """One GPU given to a job."""

    id: str
    """Its index, as ``CUDA_VISIBLE_DEVICES`` / ``ROCR_VISIBLE_DEVICES`` name it."""
    vendor: str = "nvidia"
    devices: tuple[str, ...] = ()
    """Host device files a container needs for it (its own and the shared control ones)."""


@dataclasses.dataclass(frozen=True)
class Allocation:
    """One job's share of the node."""

    cpus: tuple[int, ...] = ()
    """CPU ids to pin the payload to; empty: no pinning."""
    gpus: tuple[GpuDevice, ...] = ()


def core_env(cores: int) -> dict[str, str]:
    """The variables telling a payload how many cores it has."""
    value = str(max(1, cores))
    return {name: value for name in (*THREAD_VARIABLES, *CORE_VARIABLES)}


def gpu_env(gpus: Sequence[GpuDevice]) -> dict[str, str]:
    """``CUDA_VISIBLE_DEVICES`` and ``ROCR_VISIBLE_DEVICES`` naming the job's GPUs of each
    vendor (empty: none of that vendor), and ``GRIDPILOT_GPUS``, their number."""
    env = {
        variable: ",".join(gpu.id for gpu in gpus if gpu.vendor == vendor)
        for vendor, variable in GPU_VARIABLES.items()
    }
    env["GRIDPILOT_GPUS"] = str(len(gpus))
    return env


def vendors(gpus: Iterable[GpuDevice]) -> list[str]:
    """The vendors among ``gpus``, in ``VENDORS`` order."""
    present = {gpu.vendor for gpu in gpus}
    return [vendor for vendor in VENDORS if vendor in present]


def container_path(host_path: str) -> str:
    """Where a host device file goes in a container: from its last ``/dev/`` on
    (``/dev/nvidia0``, ``/dev/dri/renderD128``)."""
    marker = host_path.rfind("/dev/")
    return host_path[marker:] if marker >= 0 else "/dev/" + os.path.basename(host_path)


def device_binds(gpus: Sequence[GpuDevice]) -> list[tuple[str, str]]:
    """(host file, container file) of every device the job's GPUs need, once each, for
    the files present on the node."""
    binds: dict[str, str] = {}
    for gpu in gpus:
        for host in gpu.devices:
            if host not in binds and os.path.exists(host):
                binds[host] = container_path(host)
    return list(binds.items())


@contextlib.contextmanager
def thread_affinity(cpus: Sequence[int]) -> Iterator[None]:
    """Pin the calling thread to ``cpus`` for the block: a process it starts inherits the
    mask (Linux affinity is per thread), so the payload starts pinned in every runtime.
    No-op for no CPUs, where affinity cannot be set, or for CPUs this process may not use."""
    getter = getattr(os, "sched_getaffinity", None)
    setter = getattr(os, "sched_setaffinity", None)
    if not cpus or getter is None or setter is None:
        yield
        return
    before = getter(0)
    wanted = set(cpus) & set(before)
    if not wanted:
        logger.warning("CPUs %s are not this process's (%s): not pinning", cpus, sorted(before))
        yield
        return
    pin = _affinity_setter(wanted | set(before)) or setter
    pin(0, wanted)
    try:
        yield
    finally:
        pin(0, before)


@functools.lru_cache(maxsize=1)
def _libc_sched_setaffinity() -> Optional[Callable[..., int]]:
    try:
        call: Callable[..., int] = ctypes.CDLL(None, use_errno=True).sched_setaffinity
    except (OSError, AttributeError):
        return None
    return call


def _affinity_setter(cpus: set[int]) -> Optional[Callable[[int, Iterable[int]], None]]:
    """``sched_setaffinity`` through libc by ctypes, which lets go of the GIL for the call
    (``os.sched_setaffinity`` holds it): moving the calling thread to another CPU returns
    only once the thread runs there, on a loaded node the better part of a millisecond in
    which no other thread of the pilot ran (py-spy, bench/throughput.py: 8-14% of the
    pilot's samples, and 4% more for setting the mask back). ``cpus``: every id it will
    be given. None where libc or the call is not there, or an id is too high."""
    call = _libc_sched_setaffinity()
    if call is None or max(cpus) >= CPU_SETSIZE:
        return None

    def pin(pid: int, wanted: Iterable[int]) -> None:
        mask = (ctypes.c_ulong * (CPU_SETSIZE // (8 * ctypes.sizeof(ctypes.c_ulong))))()
        bits = 8 * ctypes.sizeof(ctypes.c_ulong)
        for cpu in wanted:
            mask[cpu // bits] |= 1 << (cpu % bits)
        if call(pid, ctypes.sizeof(mask), ctypes.byref(mask)) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))

    return pin
