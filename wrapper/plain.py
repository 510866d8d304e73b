"""Plain execution: the payload runs directly on the node, without isolation.

Only for sites that allow it (``WrapperConfig.allow_plain``). The payload still gets its
own session and process group, a clean environment built by the caller, and its stdout
and stderr written straight to files (no pipe through the wrapper, so nothing is lost if
the wrapper dies).

Executable resolution follows DIRAC's JobWrapper: a name with a slash is a path (relative
ones to the work dir); a bare name is looked up on the payload's PATH first, then in the
work dir. A file in the work dir that is not executable gets its execute bits, as shipped
scripts often lose them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wrapper.errors import (
    ExecutableNotFound,
    PayloadStartError,
    RuntimeFailure,
    RuntimeUnavailable,
)
from wrapper.patterns import inside
from wrapper.runtime import RunningPayload, RunSpec

logger = logging.getLogger(__name__)

_PAYLOAD_FAULT_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EACCES,
        errno.ENOEXEC,
        errno.ENOTDIR,
        errno.ELOOP,
        errno.EISDIR,
        errno.E2BIG,
    }
)
"""exec() failures that come from what the job asked to run, not from the node."""

_ST_NOEXEC = getattr(os, "ST_NOEXEC", 8)


def resolve_executable(executable: str, cwd: Path, path_env: str) -> str:
    """The path to exec for ``executable``; raise ``ExecutableNotFound`` if there is none."""
    if not executable:
        raise ExecutableNotFound(executable)
    if "/" in executable:
        candidate = os.path.join(cwd, executable)
    else:
        # Relative PATH entries would be resolved against the wrapper's own cwd: drop them.
        search = os.pathsep.join(p for p in path_env.split(os.pathsep) if os.path.isabs(p))
        found = shutil.which(executable, path=search) if search else None
        candidate = found or os.path.join(cwd, executable)
    if not os.path.isfile(candidate):
        raise ExecutableNotFound(executable)
    cwd_real = os.path.realpath(cwd)
    if inside(os.path.realpath(candidate), cwd_real):
        if _noexec(cwd_real):
            raise RuntimeFailure(f"work dir {cwd} is on a file system mounted noexec")
        make_executable(candidate)
    return candidate


def _noexec(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & _ST_NOEXEC)
    except OSError:
        return False


def make_executable(path: str) -> None:
    if os.access(path, os.X_OK):
        return
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        # Execute wherever read is allowed, like DIRAC's chmod of the payload.
        os.chmod(path, mode | stat.S_IXUSR | ((mode & 0o044) >> 2))
    except OSError as exc:
        # exec() will then report the job's problem precisely.
        logger.warning("could not make %s executable: %s", path, exc)
        return
    logger.info("made %s executable", path)


def identity(spec: RunSpec) -> dict[str, Any]:
    """``Popen`` arguments that start the child as the spec's user (nothing if none)."""
    if spec.user is None:
        return {}
    return {"user": spec.user, "group": spec.user, "extra_groups": []}


@contextlib.contextmanager
def output_fds(spec: RunSpec) -> Iterator[tuple[int, int]]:
    """Open stdout and stderr files for the child; the parent's copies close on exit.

    They belong to the payload's user, so the payload may also reopen them by name.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
    fds: list[int] = []
    try:
        try:
            for path in (spec.stdout_path, spec.stderr_path):
                path.parent.mkdir(parents=True, exist_ok=True)
                fds.append(os.open(path, flags, 0o644))
                if spec.user is not None:
                    os.fchown(fds[-1], spec.user, spec.user)
        except OSError as exc:
            raise RuntimeFailure(f"cannot open payload output files: {exc}") from exc
        # O_APPEND on both: if StdOutput and StdError name one file, both streams interleave
        # instead of overwriting each other.
        yield fds[0], fds[1]
    finally:
        for fd in fds:
            os.close(fd)


def _start_error(executable: str, exc: OSError) -> Exception:
    if exc.errno in _PAYLOAD_FAULT_ERRNOS:
        return PayloadStartError(executable, exc.strerror or str(exc))
    return RuntimeFailure(f"cannot start {executable}: {exc}")


class PlainRuntime:
    """Runs the payload's argv directly as a new session and process group."""

    name = "plain"

    def available(self) -> bool:
        return True

    def start(self, spec: RunSpec) -> RunningPayload:
        if spec.image:
            raise RuntimeUnavailable(f"plain execution cannot run container image {spec.image}")
        if not spec.cwd.is_dir():
            raise RuntimeFailure(f"work dir {spec.cwd} does not exist")
        if not spec.argv:
            raise ExecutableNotFound("")
        argv = [resolve_executable(spec.argv[0], spec.cwd, spec.env.get("PATH", ""))]
        argv.extend(spec.argv[1:])
        with output_fds(spec) as (stdout_fd, stderr_fd):
            try:
                process = subprocess.Popen(
                    argv,
                    cwd=spec.cwd,
                    env=dict(spec.env),
                    stdin=subprocess.DEVNULL,
                    stdout=stdout_fd,
                    stderr=stderr_fd,
                    start_new_session=True,
                    close_fds=True,
                    **identity(spec),
                )
            except OSError as exc:
                raise _start_error(spec.argv[0], exc) from exc
        logger.info("payload started: pid %d, %s", process.pid, argv[0])
        return RunningPayload(process)
