"""One process that imports once and forks a child per check.

Starting a fresh interpreter per check costs ~60 ms of CPU (start-up, ``protocol``,
psutil); fourteen of them at once on a 2-core node took most of a second. The runner
instead starts one fork server with every check's pipes already open (``pass_fds``) and
the jobs on stdin. The server imports the checks machinery and the built-in modules
(trusted code; community modules are imported only in their own child, under its
deadline), then forks one child per job. Each child starts its own session (so the
runner can kill its whole process group), points stdout/stderr at its output pipe, runs
its check and writes the outcome to its result pipe. On the status pipe the server says
``start INDEX PID`` per fork, ``unforked INDEX 1`` when a fork fails, and ``exit PID CODE``
(CODE as ``Popen.returncode``: -N for signal N) per child, until all its children are gone.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, Optional

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 1.0
_READ_CHUNK_BYTES = 65536

# Fixed, so the status pipe cannot collide with the descriptors the runner passes.
_STATUS_FD_ARG = 1


def serve(argv: Sequence[str]) -> int:
    """The fork server's main: ``argv[0]`` is the status pipe; jobs arrive as JSON on stdin."""
    status_fd = int(argv[_STATUS_FD_ARG - 1])
    batch = json.loads(sys.stdin.buffer.read())
    _preload(batch.get("preload", []))
    jobs: list[Mapping[str, Any]] = batch["jobs"]
    children = 0
    for index, job in enumerate(jobs):
        try:
            pid = os.fork()
        except OSError as exc:
            # Out of processes: this check ends without a result, saying why.
            with contextlib.suppress(OSError):
                os.write(job["output_fd"], f"cannot fork the check process: {exc}".encode())
            pid = -1
        if pid == 0:
            _run_child(job, jobs[index + 1 :], status_fd)
        os.close(job["result_fd"])
        os.close(job["output_fd"])
        if pid < 0:
            _say(status_fd, f"unforked {index} 1")
            continue
        children += 1
        _say(status_fd, f"start {index} {pid}")
    while children:
        try:
            pid = _kill_leftovers_of_next_exit()
            _, wait_status = os.waitpid(pid, 0)
        except ChildProcessError:
            break
        children -= 1
        _say(status_fd, f"exit {pid} {_returncode(wait_status)}")
    return 0


def _preload(modules: Sequence[str]) -> None:
    # The children are forked after this: each import here is paid once, not per check.
    for name in ("checks.child", "psutil", *modules):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - boundary: the check's own child reports it
            continue


def _run_child(
    job: Mapping[str, Any], later_jobs: Sequence[Mapping[str, Any]], status_fd: int
) -> NoReturn:
    """In the forked child: own session, own pipes, run the check, never return."""
    code = 1
    try:
        os.setsid()
        # The server closed the earlier jobs' pipes already; the later ones are not ours.
        for other in later_jobs:
            os.close(other["result_fd"])
            os.close(other["output_fd"])
        os.close(status_fd)
        result_fd, output_fd = job["result_fd"], job["output_fd"]
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(null_fd)
        os.close(output_fd)
        # Processes the check starts must not hold the result pipe open after we exit.
        os.set_inheritable(result_fd, False)
        code = _run_request(job["request"], result_fd)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        logging.getLogger(__name__).exception("check child crashed")
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


def _run_request(request: Mapping[str, Any], result_fd: int) -> int:
    from checks.child import run_request

    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    outcome = run_request(request)
    with os.fdopen(result_fd, "wb") as result_pipe:
        result_pipe.write(json.dumps(outcome, allow_nan=False).encode())
    return 0


def _kill_leftovers_of_next_exit() -> int:
    """Wait for a check process to exit, kill its process group, return its pid (unreaped).

    Until it is reaped the exited check holds its pid, so the group it led (whatever it
    started and left running) is killed without any risk of hitting a reused pid. The
    runner kills the group too, but only while it has not heard of the exit.
    """
    info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
    if info is None:  # only with WNOHANG; kept for the type checker
        raise ChildProcessError
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(info.si_pid, signal.SIGKILL)
    return info.si_pid


def _returncode(wait_status: int) -> int:
    if os.WIFSIGNALED(wait_status):
        return -os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def _say(status_fd: int, line: str) -> None:
    # OSError: the runner is gone or stopped listening; nothing left to tell.
    with contextlib.suppress(OSError):
        os.write(status_fd, (line + "\n").encode())


def main() -> NoReturn:
    sys.exit(serve(sys.argv[1:]))


class ForkServer:
    """The runner's handle on a fork server: which job runs as which pid, and how it ended.

    Jobs are numbered in the order given to ``start``. Before the server has forked job
    N, ``pid(N)`` is None; once it is gone, every job counts as exited.
    """

    def __init__(self, proc: Optional[subprocess.Popen[bytes]], status_fd: int) -> None:
        self.proc = proc
        self.status_fd = status_fd
        self.closed = proc is None
        self._pids: dict[int, int] = {}
        self._codes: dict[int, int] = {}
        self._pending = b""

    @classmethod
    def start(
        cls,
        bootstrap: Sequence[str],
        jobs: Sequence[Mapping[str, Any]],
        *,
        preload: Sequence[str],
        env: Mapping[str, str],
        workdir: Path,
    ) -> ForkServer:
        """Start the server with ``jobs`` (each with its pipes' write ends, which this closes).

        ``bootstrap`` is the command before the status fd argument. A server that cannot
        start leaves every job exited without a result.
        """
        status_read, status_write = os.pipe()
        child_fds = [status_write] + [
            fd for job in jobs for fd in (job["result_fd"], job["output_fd"])
        ]
        batch = json.dumps({"jobs": list(jobs), "preload": list(preload)}).encode()
        proc: Optional[subprocess.Popen[bytes]] = None
        try:
            proc = subprocess.Popen(
                [*bootstrap[:-1], str(status_write), bootstrap[-1]],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                pass_fds=child_fds,
                start_new_session=True,
                env=dict(env),
                cwd=str(workdir) if workdir.is_dir() else None,
            )
            # The server reads all of stdin first; if it died, its status pipe says so.
            with contextlib.suppress(BrokenPipeError):
                assert proc.stdin is not None
                proc.stdin.write(batch)
                proc.stdin.close()
        except OSError as exc:
            logger.error("cannot start the check processes: %s", exc)
        finally:
            for fd in child_fds:
                os.close(fd)
        os.set_blocking(status_read, False)
        return cls(proc, status_read)

    def pid(self, index: int) -> Optional[int]:
        return self._pids.get(index)

    def exited(self, index: int) -> bool:
        return self.closed or index in self._codes

    def returncode(self, index: int) -> Optional[int]:
        return self._codes.get(index)

    def on_status(self) -> None:
        """Read what the server said so far (call when the status fd is readable)."""
        try:
            chunk = os.read(self.status_fd, _READ_CHUNK_BYTES)
        except BlockingIOError:
            return
        if not chunk:
            self.closed = True
            return
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        index_of = {pid: index for index, pid in self._pids.items()}
        for line in lines:
            kind, first, second = line.decode().split()
            if kind == "start":
                self._pids[int(first)] = int(second)
                index_of[int(second)] = int(first)
            elif kind == "unforked":
                self._codes[int(first)] = int(second)
            elif int(first) in index_of:
                self._codes[index_of[int(first)]] = int(second)

    def await_exit(self, index: int, timeout_s: float) -> bool:
        """Wait until job ``index`` has exited; False if it has not within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(self.status_fd, selectors.EVENT_READ)
            while not self.exited(index):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if selector.select(remaining):
                    self.on_status()
        return True

    def kill(self, index: int) -> None:
        """SIGKILL job ``index``'s process group (the check and whatever it started)."""
        pid = self._pids.get(index)
        if pid is not None and index not in self._codes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    def shutdown(self) -> None:
        """Let the server finish (or kill it: it forks nothing more), kill leftovers, close."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "check fork server %d still waiting for children; killed", self.proc.pid
                )
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            os.set_blocking(self.status_fd, True)
            while not self.closed:
                self.on_status()
        for index in list(self._pids):
            self.kill(index)
        os.close(self.status_fd)
