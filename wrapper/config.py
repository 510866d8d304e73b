"""How the wrapper runs jobs on this node: the site's settings, one frozen object.

``WrapperConfig`` nests the site's container settings, the watchdog policy and the sandbox
limits; the pilot's ``PilotConfig`` holds one (``PilotConfig.wrapper``) and passes it to
every ``JobRun``. Standard library only, so the pilot can read its configuration without
loading the runtimes (``gridpilot checks run`` starts faster).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

MIB = 1024**2
GIB = 1024**3
CONTAINER_RUNTIMES = ("apptainer", "bwrap")
"""Container runtime names, also the tags and ``container_runtimes`` a pilot advertises."""
CVMFS = "/cvmfs"


@dataclasses.dataclass(frozen=True)
class ContainerSettings:
    """The site's container configuration."""

    runtimes: tuple[str, ...] = CONTAINER_RUNTIMES
    """Container runtimes the site allows, in order of preference."""
    required: bool = False
    """Every job must run in a container (plain execution is never chosen)."""
    default_image: str = ""
    """Image for jobs that name none."""
    binds: tuple[str, ...] = ()
    """``src[:dst[:ro|rw]]`` host paths bound into every container; missing ones dropped."""
    network: bool = True
    """Containers share the node's network (a job can still opt out)."""
    apptainer_path: str = ""
    bwrap_path: str = ""
    state_dir: Optional[Path] = None
    """Pilot directory for Apptainer's cache and tmp (default: the job dir's parent)."""
    cvmfs_root: str = CVMFS
    allowed_images: tuple[str, ...] = (CVMFS,)
    """Directories and image files where a job's ``Container`` may be (``wrapper.images``)."""
    allow_remote_images: bool = True
    """Jobs may name images Apptainer fetches from a registry (``docker://...``)."""


@dataclasses.dataclass(frozen=True)
class WatchdogPolicy:
    """The site's watchdog settings (docs/wrapper.md "Watchdog and limits"); 0: no limit."""

    watchdog_interval_s: float = 1.0
    full_scan_interval_s: float = 10.0
    """How often the costly measurements run: the work-dir walk (it may hold many files) and
    the search of every process for the job's environment marker."""
    wall_time_factor: float = 1.1
    cpu_time_factor: float = 1.1
    time_limit_margin_s: float = 60.0
    """Added to both time limits after the factor."""
    memory_factor: float = 1.0
    default_wall_time_s: int = 0
    default_cpu_time_s: int = 0
    default_max_ram_mb: int = 0
    max_workdir_bytes: int = 0
    max_stdio_bytes: int = 10 * GIB
    """StdOutput and StdError together."""
    max_processes: int = 4096
    stalled_after_s: float = 1800.0
    use_cgroups: bool = True
    """Also set hard limits in a job cgroup where cgroup v2 is delegated to us."""


MAX_TREE_DEPTH = 256
MAX_SCAN_ENTRIES = 1_000_000


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    """What ``unpack`` accepts (archive size, member count, bytes written, depth) and how
    far ``pack`` walks a payload's tree looking for its output files."""

    max_bytes: int = 10 * GIB
    max_files: int = 100_000
    max_unpacked_bytes: int = 20 * GIB
    max_depth: int = MAX_TREE_DEPTH
    """Directory levels, in an input archive and in the tree an output pattern walks."""
    max_scan_entries: int = MAX_SCAN_ENTRIES
    """Entries one output pattern may walk past (``**/x`` over the whole work dir)."""
    max_ratio: float = 200.0
    """Bytes written per compressed byte read, past ``ratio_floor_bytes`` (0: no limit)."""
    ratio_floor_bytes: int = 64 * MIB
    """Small archives may expand as much as they like: zeros compress 1,000 to 1."""


@dataclasses.dataclass(frozen=True)
class WrapperConfig:
    """How the wrapper runs jobs on this node."""

    allow_plain: bool = True
    containers: ContainerSettings = dataclasses.field(default_factory=ContainerSettings)
    """Container runtimes, images and binds: see ``wrapper.selection``."""
    kill_grace_s: float = 5.0
    max_output_sandbox_bytes: int = 2 * GIB
    """Output files past this cap are left out (the job says which). 2 GiB: well under the
    coordinator's default upload limit (10 GiB), and packed in constant memory
    (bench/large_sandbox.py)."""
    sandbox_limits: SandboxLimits = dataclasses.field(default_factory=SandboxLimits)
    upload_retries: int = 3
    """Attempts after the first failed upload; the wait doubles from ``upload_backoff_s``."""
    upload_backoff_s: float = 1.0
    env_passthrough: tuple[str, ...] = ("PATH", "LANG", "LC_ALL", "TZ")
    watchdog: WatchdogPolicy = dataclasses.field(default_factory=WatchdogPolicy)
