"""Apptainer/Singularity through spython: the only module that imports spython.

The command line is what spython builds for ``exec``: its ``_init_command`` and
``_generate_bind_list`` put together in the order of its ``Client.execute`` (which runs the
command itself and captures the output, so it cannot be used to start a supervised
payload). spython always names the binary ``singularity``; the first word is replaced by
the binary found (config, then ``apptainer``, then ``singularity`` on PATH).

Options: ``--contain --ipc --pid`` (own /dev, /tmp, IPC and PID namespaces),
``--cleanenv`` (the node's environment stays out), ``--home WORKDIR:/srv --pwd /srv``
(the work dir, bound read-write, is HOME and cwd), ``--nv`` / ``--rocm`` for jobs given
GPUs,
``--net --network none`` when the job may not use the network, ``--bind /cvmfs:/cvmfs:ro``
when present and the site binds. The payload's environment is passed as
``APPTAINERENV_NAME`` (``SINGULARITYENV_`` for singularity) variables of the runtime
process, which ``--cleanenv`` lets through; nothing else of the pilot's environment is.
Apptainer's cache and temporary dirs are in the pilot's directory, never in ``$HOME``.

Telling Apptainer's failures from the payload's: Apptainer reports its own errors with
exit code 255 and a ``FATAL:`` line on stderr; a payload exiting 255 prints no such line.
A FATAL line about the image is the image's fault, one about the executable the job's,
anything else the runtime's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

from spython.main.base import Client

from wrapper.container import (
    CONTAINER_WORKDIR,
    CVMFS,
    HOST_ENV,
    REMOTE_IMAGE_MARKER,
    Bind,
    check_local_image,
    container_env,
    last_line_with,
    node_binds,
    payload_argv,
)
from wrapper.devices import vendors
from wrapper.errors import ContainerRuntimeFailed, ExecutableNotFound, RuntimeUnavailable
from wrapper.plain import identity, output_fds
from wrapper.runtime import ContainerFault, RunningPayload, RunResult, RunSpec

logger = logging.getLogger(__name__)

BINARIES = ("apptainer", "singularity")
"""Looked up on PATH in this order when the site names no binary."""
FATAL_EXIT_CODE = 255
FATAL_PREFIX = "FATAL:"
EXEC_FAILED_EXIT_CODE = 127
"""PATH of the runtime process itself (not the payload's)."""
_EXEC_FAILURES = (
    re.compile(r"executable file not found"),
    re.compile(r"^stat \S+: no such file or directory"),
    re.compile(r"^exec \S+ failed"),
)
"""How Apptainer words "the program to run is not there": the job's fault."""
_IMAGE_FAILURE_MARKERS = ("image", "sif", "squashfs")


@dataclasses.dataclass(frozen=True)
class ApptainerSettings:
    """The site's part: binary, binds, where Apptainer may write its cache."""

    binary: str = ""
    """Path to apptainer or singularity; default: PATH, apptainer before singularity."""
    binds: tuple[str, ...] = ()
    cvmfs_root: str = CVMFS
    state_dir: Optional[Path] = None
    """Pilot directory holding ``apptainer/cache`` and ``apptainer/tmp``; default: the
    parent of the job's work dir (the pilot's directory)."""


@dataclasses.dataclass(frozen=True)
class Invocation:
    """A runtime process to start: its argv and its whole environment."""

    argv: list[str]
    env: dict[str, str]


def find_binary(configured: str = "") -> Optional[str]:
    """The binary to use: the configured one if executable, else PATH's."""
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


GPU_FLAGS = {"nvidia": "--nv", "amd": "--rocm"}
"""Apptainer's option binding a vendor's GPU devices and driver libraries."""


def gpu_flags(spec: RunSpec) -> list[str]:
    """``--nv`` / ``--rocm`` for the vendors of the job's GPUs; ``--nv`` for a job asking for
    a GPU by tag whose pilot counted none (an older coordinator). Apptainer binds all of
    the vendor's devices; ``CUDA_VISIBLE_DEVICES`` / ``ROCR_VISIBLE_DEVICES`` (passed in)
    narrow what the payload uses to its own. A job without GPUs gets neither, and
    ``--contain``'s minimal /dev has no GPU."""
    kinds = vendors(spec.gpus) or (["nvidia"] if spec.gpu else [])
    return [GPU_FLAGS[kind] for kind in kinds if kind in GPU_FLAGS]


def exec_command(
    binary: str,
    image: str,
    argv: list[str],
    options: list[str],
    binds: list[str],
    gpu_options: Sequence[str] = (),
) -> list[str]:
    """spython's ``exec`` command line, in ``Client.execute``'s order, for ``binary``
    (``gpu_options`` where spython puts ``--nv``)."""
    client = Client()
    client.quiet = True
    client.debug = False
    command: list[str] = client._init_command("exec")
    command += list(gpu_options)
    try:
        command += client._generate_bind_list(binds)
    except SystemExit as exc:  # spython exits when a bind source vanished after our check
        raise ContainerRuntimeFailed(f"bind source vanished: {' '.join(binds)}") from exc
    command += options
    command += [image, *argv]
    command[0] = binary
    return command


def runtime_options(workdir: Path, network: bool) -> list[str]:
    """Isolation, work dir and network options (spython's ``options`` argument)."""
    options = ["--contain", "--ipc", "--pid", "--cleanenv"]
    options += ["--home", f"{workdir}:{CONTAINER_WORKDIR}", "--pwd", CONTAINER_WORKDIR]
    if not network:
        options += ["--net", "--network", "none"]
    return options


def runtime_env(binary: str, payload_env: Mapping[str, str], state_dir: Path) -> dict[str, str]:
    """The runtime process's environment: the fixed ``HOST_ENV``, its dirs and the payload's
    variables, prefixed (Apptainer sets them inside the container only)."""
    prefix = "SINGULARITY" if os.path.basename(binary).startswith("singularity") else "APPTAINER"
    env = {
        **HOST_ENV,
        f"{prefix}_CACHEDIR": str(state_dir / "apptainer" / "cache"),
        f"{prefix}_TMPDIR": str(state_dir / "apptainer" / "tmp"),
    }
    for name, value in payload_env.items():
        # Apptainer sets HOME from --home and PWD from --pwd, and refuses overrides.
        if name not in ("HOME", "PWD"):
            env[f"{prefix}ENV_{name}"] = value
    return env


def build_invocation(binary: str, spec: RunSpec, binds: list[Bind], state_dir: Path) -> Invocation:
    """Everything ``start`` runs for ``spec``, so tests can pin it exactly (its only effect:
    a shipped script gets its execute bit back)."""
    argv = payload_argv(spec.argv, spec.cwd)
    command = exec_command(
        binary,
        spec.image,
        argv,
        runtime_options(spec.cwd, spec.network),
        [bind.apptainer_spec() for bind in binds],
        gpu_flags(spec),
    )
    return Invocation(command, runtime_env(binary, container_env(spec.env, spec.cwd), state_dir))


class ApptainerRuntime:
    """Runs the payload with Apptainer (or Singularity) from a SIF or directory image."""

    name = "apptainer"
    supports_gpu = True

    def __init__(self, settings: Optional[ApptainerSettings] = None) -> None:
        self.settings = settings or ApptainerSettings()

    def available(self) -> bool:
        return find_binary(self.settings.binary) is not None

    def start(self, spec: RunSpec) -> RunningPayload:
        binary = find_binary(self.settings.binary)
        if binary is None:
            raise RuntimeUnavailable("neither apptainer nor singularity is installed")
        if not spec.image:
            raise RuntimeUnavailable("apptainer needs an image")
        if not spec.argv or not spec.argv[0]:
            raise ExecutableNotFound("")
        if REMOTE_IMAGE_MARKER not in spec.image:
            check_local_image(spec.image)
        state_dir = self.settings.state_dir or spec.cwd.parent
        invocation = build_invocation(
            binary, spec, node_binds(self.settings.binds, self.settings.cvmfs_root), state_dir
        )
        for name in ("cache", "tmp"):
            (state_dir / "apptainer" / name).mkdir(parents=True, exist_ok=True, mode=0o700)
        with output_fds(spec) as (stdout_fd, stderr_fd):
            try:
                process = subprocess.Popen(
                    invocation.argv,
                    env=invocation.env,
                    stdin=subprocess.DEVNULL,
                    stdout=stdout_fd,
                    stderr=stderr_fd,
                    start_new_session=True,
                    close_fds=True,
                    **identity(spec),
                )
            except OSError as exc:
                raise ContainerRuntimeFailed(f"cannot start {binary}: {exc}") from exc
        logger.info("payload started in %s: pid %d, image %s", binary, process.pid, spec.image)
        return ApptainerPayload(process, spec.stderr_path)


def classify_fatal(detail: str) -> Optional[ContainerFault]:
    """Whose fault a FATAL message is: the image's, the runtime's, or (None) the job's."""
    lowered = detail.lower()
    if any(pattern.search(lowered) for pattern in _EXEC_FAILURES):
        return None
    if any(marker in lowered for marker in _IMAGE_FAILURE_MARKERS):
        return ContainerFault.IMAGE
    return ContainerFault.RUNTIME


class ApptainerPayload(RunningPayload):
    """A payload under Apptainer: its result says whether Apptainer itself failed."""

    def __init__(self, process: subprocess.Popen[bytes], stderr_path: Path) -> None:
        super().__init__(process)
        self._stderr_path = stderr_path
        self._interpreted: Optional[RunResult] = None

    def finish(self, grace_s: float) -> RunResult:
        result = super().finish(grace_s)
        if self._interpreted is None:
            self._interpreted = interpret(result, self._stderr_path)
        return self._interpreted


def interpret(result: RunResult, stderr_path: Path) -> RunResult:
    """``result`` with Apptainer's own failure (exit 255 + a FATAL line) classified."""
    if result.exit_code != FATAL_EXIT_CODE or result.killed_reason:
        return result
    line = last_line_with(stderr_path, FATAL_PREFIX)
    if not line:
        return result
    detail = " ".join(line[len(FATAL_PREFIX) :].split())
    fault = classify_fatal(detail)
    if fault is None:
        logger.warning("payload could not be executed: %s", detail)
        return dataclasses.replace(result, exit_code=EXEC_FAILED_EXIT_CODE)
    logger.error("apptainer failed (%s): %s", fault.value, detail)
    return dataclasses.replace(result, infrastructure_error=detail, container_fault=fault.value)
