"""bubblewrap (``bwrap``): the payload in new namespaces over a directory image.

The container's root is a fresh tmpfs; each top-level entry of the image directory is
bound read-only into it (symlinks recreated), so mount points for ``/srv``, ``/cvmfs`` and
site binds can be made even when the image lacks them. Then: ``/proc``, a minimal ``/dev``
(plus the device files of the job's GPUs and no others), an empty ``/tmp``, the job's work
dir read-write at ``/srv`` (cwd and HOME), ``/cvmfs`` read-only when present, the site
binds. Nothing else of the node is visible: not the pilot's directory, so not its token.
Every namespace is unshared (``--unshare-all``); the network is shared back only when the
job may use it. ``--die-with-parent`` ends the
container if the wrapper dies; ``--new-session`` keeps the payload off any terminal.

Nothing the job controls reaches bwrap itself, which runs on the node as the pilot's user:
bwrap is started with the fixed ``HOST_ENV`` and the payload's variables are set inside
the container only (``--setenv``, after the namespaces are made), so a job's ``LD_PRELOAD``
pointing at a library in its own sandbox loads into the payload, never into bwrap. Every
option goes through ``--args FD`` (a memfd) rather than the command line: nothing of the
job's environment is visible in ``ps`` on the node, and inside the container the init
process's ``/proc/1/cmdline`` is ``bwrap --args N -- <payload argv>``, without the node
paths of the image and the work dir. (``/proc/self/mountinfo`` still names the work dir's
path on the node: the kernel shows bind mounts' sources and bwrap cannot hide them.)

Telling bwrap's failures from the payload's: bwrap writes ``{"exit-code": N}`` to its
``--json-status-fd`` only when the payload really ran and exited. No such record means
bwrap itself failed (a bind, a namespace, the exec); its reason is its last ``bwrap:``
line on stderr. An exec failure is the job's (the program is missing in the image),
anything else is the runtime's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Optional

from wrapper.container import (
    CONTAINER_WORKDIR,
    CVMFS,
    HOST_ENV,
    Bind,
    check_local_image,
    container_env,
    last_line_with,
    node_binds,
    payload_argv,
)
from wrapper.devices import device_binds
from wrapper.errors import ContainerRuntimeFailed, ExecutableNotFound, RuntimeUnavailable
from wrapper.patterns import inside
from wrapper.plain import identity, output_fds
from wrapper.runtime import ContainerFault, RunningPayload, RunResult, RunSpec

logger = logging.getLogger(__name__)

BWRAP = "bwrap"
ERROR_PREFIX = "bwrap:"
EXEC_FAILED_PREFIX = "bwrap: execvp"
EXEC_FAILED_EXIT_CODE = 127
"""Reported when the program could not be run in the image, as a shell does."""
_MOUNTED_BY_US = frozenset({"proc", "dev", "tmp", CONTAINER_WORKDIR.strip("/")})


@dataclasses.dataclass(frozen=True)
class BubblewrapSettings:
    """The site's part: the binary and the extra binds."""

    binary: str = ""
    """Path to bwrap; default: ``bwrap`` on PATH."""
    binds: tuple[str, ...] = ()
    cvmfs_root: str = CVMFS


def image_mounts(image: Path, skip: frozenset[str]) -> list[str]:
    """bwrap options that rebuild the image's top level on the container's tmpfs root."""
    options: list[str] = []
    for entry in sorted(os.listdir(image)):
        if entry in skip:
            continue
        path = image / entry
        if path.is_symlink():
            options += ["--symlink", os.readlink(path), f"/{entry}"]
        else:
            options += ["--ro-bind", str(path), f"/{entry}"]
    return options


def build_options(
    spec: RunSpec, image: Path, binds: list[Bind], status_fd: int, env: Mapping[str, str]
) -> list[str]:
    """bwrap's options for ``spec`` (what ``start`` passes through ``--args``)."""
    # A bind onto a top-level path replaces the image's entry there; a deeper one needs its
    # mount point to exist in the (read-only) image, or bwrap fails: a runtime failure.
    top_levels = {b.destination.strip("/") for b in binds if "/" not in b.destination.strip("/")}
    options = ["--unshare-all"]
    if spec.network:
        options.append("--share-net")
    options += ["--die-with-parent", "--new-session", "--json-status-fd", str(status_fd)]
    options += image_mounts(image, _MOUNTED_BY_US | top_levels)
    options += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for host, device in device_binds(spec.gpus):
        options += ["--dev-bind", host, device]
    options += ["--bind", str(spec.cwd), CONTAINER_WORKDIR, "--chdir", CONTAINER_WORKDIR]
    for bind in binds:
        options += ["--ro-bind" if bind.read_only else "--bind", bind.source, bind.destination]
    return options + env_options(env)


def env_options(env: Mapping[str, str]) -> list[str]:
    """The payload's environment, set inside the container: bwrap's own (``HOST_ENV``)
    replaced by exactly ``env``."""
    options: list[str] = []
    for name in sorted(set(HOST_ENV) - set(env)):
        options += ["--unsetenv", name]
    for name, value in sorted(env.items()):
        options += ["--setenv", name, value]
    return options


def build_command(
    binary: str, spec: RunSpec, image: Path, binds: list[Bind], argv: list[str], status_fd: int
) -> list[str]:
    """The bwrap command for ``spec`` as if every option were on the command line (what
    ``start`` runs, but with the options passed through ``--args``)."""
    env = container_env(spec.env, spec.cwd)
    return [binary, *build_options(spec, image, binds, status_fd, env), "--", *argv]


def resolve_in_image(argv0: str, image: Path, workdir: Path, path_env: str) -> None:
    """Raise ``ExecutableNotFound`` when ``argv0`` is surely not in the container.

    Links are not followed (an image's absolute links point into the image, not the
    node); bwrap's own exec failure is still caught after the start.
    """

    def present(inside: str) -> bool:
        if inside == CONTAINER_WORKDIR or inside.startswith(CONTAINER_WORKDIR + "/"):
            return os.path.lexists(str(workdir) + inside[len(CONTAINER_WORKDIR) :])
        return os.path.lexists(str(image) + inside)

    if "/" in argv0:
        inside = argv0 if os.path.isabs(argv0) else f"{CONTAINER_WORKDIR}/{argv0}"
        found = present(os.path.normpath(inside))
    else:
        dirs = [d for d in path_env.split(os.pathsep) if os.path.isabs(d)]
        found = any(present(os.path.join(d, argv0)) for d in dirs)
    if not found:
        raise ExecutableNotFound(argv0)


class BubblewrapRuntime:
    """Runs the payload with ``bwrap`` over a directory image."""

    name = "bwrap"
    supports_gpu = True
    """With the job's GPU device files bound (``--dev-bind``); the driver's user-space
    libraries come from the image or the site's binds."""

    def __init__(self, settings: Optional[BubblewrapSettings] = None) -> None:
        self.settings = settings or BubblewrapSettings()

    def binary(self) -> Optional[str]:
        configured = self.settings.binary
        if configured:
            return configured if os.access(configured, os.X_OK) else None
        return shutil.which(BWRAP)

    def available(self) -> bool:
        return self.binary() is not None

    def start(self, spec: RunSpec) -> RunningPayload:
        binary = self.binary()
        if binary is None:
            raise RuntimeUnavailable("bwrap is not installed on this node")
        if not spec.image:
            raise RuntimeUnavailable("bwrap needs a directory image")
        if not spec.argv:
            raise ExecutableNotFound("")
        image = check_local_image(spec.image, directory_only=True)
        if inside(os.path.realpath(spec.cwd), os.path.realpath(image)):
            # The pilot's directory (and its token file) would be visible in the container.
            raise RuntimeUnavailable(f"image {image} holds the job's work dir: not usable")
        env = container_env(spec.env, spec.cwd)
        argv = payload_argv(spec.argv, spec.cwd)
        resolve_in_image(argv[0], image, spec.cwd, env.get("PATH", ""))
        binds = node_binds(self.settings.binds, self.settings.cvmfs_root)
        # Closed by the payload's finish, or here if bwrap does not start. In the job's work
        # dir, not /tmp: a pilot writes only inside its work dir (O_TMPFILE: never listed).
        status = tempfile.TemporaryFile(dir=spec.cwd)  # noqa: SIM115
        try:
            options = build_options(spec, image, binds, status.fileno(), env)
            with _args_file(options, spec.cwd) as args_fd:
                command = [BWRAP, "--args", str(args_fd), "--", *argv]
                process = _popen(binary, command, spec, (status.fileno(), args_fd))
        except BaseException:
            status.close()
            raise
        logger.info("payload started in bwrap: pid %d, image %s, %s", process.pid, image, argv[0])
        return BubblewrapPayload(process, status, spec.stderr_path)


@contextlib.contextmanager
def _args_file(options: list[str], workdir: Path) -> Iterator[int]:
    """A descriptor holding ``options`` NUL-separated, for ``--args`` (closed on exit)."""
    data = b"".join(option.encode() + b"\0" for option in options)
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        fd: int = memfd_create("bwrap-args", 0)
    else:  # pragma: no cover - Linux < 3.17
        fd = os.open(workdir, os.O_TMPFILE | os.O_RDWR, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)


def _popen(
    binary: str, command: list[str], spec: RunSpec, keep_fds: tuple[int, ...]
) -> subprocess.Popen[bytes]:
    """Start ``binary`` as ``command`` with the payload's output files and ``keep_fds`` (same
    numbers), in the fixed host environment: nothing of the job's applies to bwrap itself."""
    with output_fds(spec) as (stdout_fd, stderr_fd):
        try:
            return subprocess.Popen(
                command,
                executable=binary,
                env=dict(HOST_ENV),
                stdin=subprocess.DEVNULL,
                stdout=stdout_fd,
                stderr=stderr_fd,
                start_new_session=True,
                close_fds=True,
                pass_fds=keep_fds,
                **identity(spec),
            )
        except OSError as exc:
            raise ContainerRuntimeFailed(f"cannot start bwrap: {exc}") from exc


class BubblewrapPayload(RunningPayload):
    """A payload under bwrap: its result says whether bwrap itself failed."""

    def __init__(
        self, process: subprocess.Popen[bytes], status: IO[bytes], stderr_path: Path
    ) -> None:
        super().__init__(process)
        self._status = status
        self._stderr_path = stderr_path
        self._interpreted: Optional[RunResult] = None

    def finish(self, grace_s: float) -> RunResult:
        result = super().finish(grace_s)
        if self._interpreted is None:
            self._interpreted = self._interpret(result)
            self._status.close()
        return self._interpreted

    def _interpret(self, result: RunResult) -> RunResult:
        if result.killed_reason or result.signal is not None or result.infrastructure_error:
            return result  # killed from outside: bwrap did not get to report
        records = _status_records(self._status)
        if any("exit-code" in record for record in records):
            return result
        reason = last_line_with(self._stderr_path, ERROR_PREFIX) or (
            f"bwrap exited {result.exit_code} before the payload ran"
        )
        if reason.startswith(EXEC_FAILED_PREFIX):
            logger.warning("payload %d could not be executed: %s", self.pid, reason)
            return dataclasses.replace(result, exit_code=EXEC_FAILED_EXIT_CODE)
        logger.error("bwrap failed for payload %d: %s", self.pid, reason)
        return dataclasses.replace(
            result, infrastructure_error=reason, container_fault=ContainerFault.RUNTIME.value
        )


def _status_records(status: IO[bytes]) -> list[dict[str, object]]:
    """bwrap's JSON records: one object per line (each written whole, in one write)."""
    status.seek(0)
    records = []
    for line in status.read().decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
