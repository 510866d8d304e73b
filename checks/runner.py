"""Runs checks in child processes, all at once, each against its own deadline.

A check that hangs (a dead mount, a stuck probe) is killed with its whole process group
when its deadline passes and reported as ``timeout``: it can never hang the pilot. The
children are forked by one fork server (``checks.forkserver``), so the interpreter and the
checks machinery are loaded once per run, not once per check. One loop multiplexes every
child's pipes and the server's status pipe, so no check's output can block another's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import selectors
import signal
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

from checks.api import CheckSource, CheckSpec
from checks.errors import ChecksError
from checks.forkserver import ForkServer
from protocol import CheckReport, CheckStatus

logger = logging.getLogger(__name__)

TOKEN_ENV_PREFIX = "GRIDPILOT_TOKEN"
"""Environment variables a check must never see (the pilot's credentials)."""

OUTPUT_LIMIT_BYTES = 64 * 1024
"""Tail of a check's stdout/stderr kept for the log."""

RESULT_LIMIT_BYTES = 1024 * 1024
REAP_TIMEOUT_S = 1.0
_READ_CHUNK_BYTES = 65536

# The server gets exactly the parent's sys.path (so checks import what the pilot imports,
# also from a zipapp) without PYTHONPATH's ordering, which would put site-packages ahead
# of the standard library and the work dir on the path.
_BOOTSTRAP = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[2]); "
    "from checks.forkserver import main; main()"
)
"""Run as ``python -c _BOOTSTRAP STATUS_FD SYS_PATH_JSON``."""


@dataclasses.dataclass
class _Run:
    """One check's child process and what it has sent back so far."""

    spec: CheckSpec
    fatal: bool
    result_fd: int
    output_fd: int
    started_at: float
    deadline: float
    index: int
    """The check's job number in the fork server."""
    returncode: Optional[int] = None
    complete: bool = False
    """The result pipe is closed and holds a JSON object: no need to wait for the exit."""
    result: bytearray = dataclasses.field(default_factory=bytearray)
    output: bytearray = dataclasses.field(default_factory=bytearray)
    result_closed_at: Optional[float] = None
    reaped: bool = False
    report: Optional[CheckReport] = None


@dataclasses.dataclass(frozen=True)
class _Launch:
    """What every child of one ``run_checks`` call shares."""

    workdir: Path
    env: Mapping[str, str]
    sys_path_json: str
    options: Mapping[str, Mapping[str, Any]]
    node_facts: Mapping[str, Any]

    def request(self, spec: CheckSpec) -> dict[str, Any]:
        """The request for ``spec``'s child; TypeError/ValueError if not plain JSON."""
        request = {
            "ref": spec.ref,
            "name": spec.name,
            "options": dict(self.options.get(spec.name, {})),
            "node_facts": dict(self.node_facts),
            "workdir": str(self.workdir),
            "script": spec.script,
        }
        json.dumps(request, allow_nan=False)
        return request


def run_checks(
    specs: Sequence[CheckSpec],
    *,
    workdir: Path,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    node_facts: Mapping[str, Any] | None = None,
    fatal_names: Collection[str] = (),
    search_path: Sequence[Path] = (),
) -> list[CheckReport]:
    """Run ``specs`` concurrently, one child process each; one report per spec, in order.

    ``options`` maps a check name to its options. ``fatal_names`` marks more checks fatal
    than their specs do. ``search_path`` directories are importable by the checks. A
    duplicate name is reported as ``fail`` and not run; nothing is ever dropped.
    """
    sys_path = [str(p) for p in search_path] + [os.path.abspath(p) for p in sys.path]
    launch = _Launch(
        workdir=workdir,
        env={k: v for k, v in os.environ.items() if not k.startswith(TOKEN_ENV_PREFIX)},
        sys_path_json=json.dumps(list(dict.fromkeys(sys_path))),
        options=options or {},
        node_facts=node_facts or {},
    )
    slots: list[Union[CheckReport, _Run]] = []
    jobs: list[dict[str, Any]] = []
    first_by_name: dict[str, CheckSpec] = {}
    for spec in specs:
        fatal = spec.fatal or spec.name in fatal_names
        first = first_by_name.setdefault(spec.name, spec)
        if spec.load_error is not None:
            slots.append(_report(spec, fatal, CheckStatus.FAIL, spec.load_error))
        elif first is not spec:
            slots.append(_report(spec, fatal, CheckStatus.FAIL, _duplicate(spec, first)))
        else:
            slots.append(_prepare(spec, fatal, launch, jobs))
    runs = [slot for slot in slots if isinstance(slot, _Run)]
    if runs:
        server = ForkServer.start(
            [sys.executable, "-c", _BOOTSTRAP, launch.sys_path_json],
            jobs,
            preload=sorted(
                {r.spec.ref.partition(":")[0] for r in runs if r.spec.source is CheckSource.BUILTIN}
            ),
            env=launch.env,
            workdir=launch.workdir,
        )
        try:
            _supervise(runs, server)
        finally:
            server.shutdown()
    return [_final_report(slot) for slot in slots]


def _prepare(
    spec: CheckSpec, fatal: bool, launch: _Launch, jobs: list[dict[str, Any]]
) -> Union[_Run, CheckReport]:
    """Open the check's pipes and queue its job for the fork server."""
    try:
        request = launch.request(spec)
    except (TypeError, ValueError) as exc:
        return _report(spec, fatal, CheckStatus.FAIL, f"options or node facts not JSON: {exc}")
    result_read, result_write = os.pipe()
    output_read, output_write = os.pipe()
    for fd in (result_read, output_read):
        os.set_blocking(fd, False)
    jobs.append({"result_fd": result_write, "output_fd": output_write, "request": request})
    now = time.monotonic()
    return _Run(spec, fatal, result_read, output_read, now, now + spec.timeout_s, len(jobs) - 1)


def _supervise(runs: list[_Run], server: ForkServer) -> None:
    selector = selectors.DefaultSelector()
    try:
        for run in runs:
            selector.register(run.result_fd, selectors.EVENT_READ, (run, "result"))
            selector.register(run.output_fd, selectors.EVENT_READ, (run, "output"))
        if not server.closed:
            selector.register(server.status_fd, selectors.EVENT_READ, (None, "status"))
        active = list(runs)
        while active:
            now = time.monotonic()
            for run in active:
                done = run.complete or server.exited(run.index)
                if run.result_closed_at is not None and done:
                    _finish(run, selector, server, run.result_closed_at)
                elif now >= run.deadline:
                    _expire(run, selector, server, now)
            active = [run for run in active if run.report is None]
            if not active:
                break
            wait_s = min(run.deadline for run in active) - now
            for key, _ in selector.select(max(wait_s, 0.0)):
                run, stream = key.data
                if stream == "status":
                    server.on_status()
                    if server.closed:
                        selector.unregister(key.fd)
                else:
                    _service(run, stream, key.fd, selector)
    finally:
        selector.close()


def _service(run: _Run, stream: str, fd: int, selector: selectors.BaseSelector) -> None:
    if stream == "output":
        if not _read_into(fd, run.output, OUTPUT_LIMIT_BYTES, keep_tail=True):
            selector.unregister(fd)
    elif not _read_into(fd, run.result, RESULT_LIMIT_BYTES, keep_tail=False):
        selector.unregister(fd)
        run.result_closed_at = time.monotonic()
        run.complete = _decode(run.result) is not None


def _read_some(fd: int) -> Optional[bytes]:
    """What is available now (b"" at end of file), None when nothing is."""
    try:
        return os.read(fd, _READ_CHUNK_BYTES)
    except BlockingIOError:
        return None


def _read_into(fd: int, buffer: bytearray, limit: int, *, keep_tail: bool) -> bool:
    """Read what is available; False at end of file."""
    while True:
        chunk = _read_some(fd)
        if chunk is None:
            return True
        if not chunk:
            return False
        if keep_tail:
            buffer.extend(chunk)
            del buffer[: max(0, len(buffer) - limit)]
        elif len(buffer) <= limit:
            buffer.extend(chunk)


def _reap(run: _Run, server: ForkServer, *, need_exit_code: bool) -> None:
    """Release the killed child's pipes, first waiting for its exit code if needed; once."""
    run.reaped = True
    if need_exit_code and not server.await_exit(run.index, REAP_TIMEOUT_S):
        # Uninterruptible I/O (a dead mount): SIGKILL lands when the I/O returns.
        pid = server.pid(run.index)
        logger.warning("check %s (pid %s) not yet gone after SIGKILL", run.spec.name, pid)
    run.returncode = server.returncode(run.index)
    os.close(run.result_fd)
    os.close(run.output_fd)
    if run.output:
        text = run.output.decode("utf-8", "replace").rstrip()
        logger.debug("check %s output:\n%s", run.spec.name, text)


def _unregister_all(run: _Run, selector: selectors.BaseSelector) -> None:
    for fd in (run.result_fd, run.output_fd):
        if fd in selector.get_map():
            selector.unregister(fd)


def _finish(
    run: _Run, selector: selectors.BaseSelector, server: ForkServer, ended_at: float
) -> None:
    """Report a check whose child has sent its result (or exited without one)."""
    _unregister_all(run, selector)
    _read_into(run.output_fd, run.output, OUTPUT_LIMIT_BYTES, keep_tail=True)
    # Processes the check left behind go with it.
    server.kill(run.index)
    _reap(run, server, need_exit_code=not run.complete)
    run.report = _parse_result(run, ended_at - run.started_at)
    logger.info(
        "check %s: %s in %.3f s %s",
        run.spec.name,
        run.report.status.value,
        run.report.duration_s,
        run.report.message,
    )


def _expire(run: _Run, selector: selectors.BaseSelector, server: ForkServer, now: float) -> None:
    """The deadline passed: kill the check's process group; use a result it already sent."""
    _read_into(run.result_fd, run.result, RESULT_LIMIT_BYTES, keep_tail=False)
    if run.result and _decode(run.result) is not None:
        logger.warning("check %s kept running after its result; killed", run.spec.name)
        _finish(run, selector, server, run.result_closed_at or now)
        return
    _unregister_all(run, selector)
    server.kill(run.index)
    _reap(run, server, need_exit_code=False)
    message = f"no result within {run.spec.timeout_s:g} s; killed its process group"
    run.report = _report(run.spec, run.fatal, CheckStatus.TIMEOUT, message, now - run.started_at)
    logger.warning("check %s: %s", run.spec.name, message)


def _final_report(slot: Union[CheckReport, _Run]) -> CheckReport:
    if isinstance(slot, CheckReport):
        return slot
    if slot.report is None:
        raise ChecksError(f"check {slot.spec.name!r} ended without a report")
    return slot.report


def _duplicate(spec: CheckSpec, first: CheckSpec) -> str:
    return (
        f"duplicate check name {spec.name!r}: {_where(spec)} ({spec.source.value}) clashes"
        f" with {_where(first)} ({first.source.value}), which runs under that name"
    )


def _where(spec: CheckSpec) -> str:
    return spec.script or spec.ref


def _decode(raw: bytearray) -> Optional[dict[str, Any]]:
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _parse_result(run: _Run, duration_s: float) -> CheckReport:
    spec, fatal = run.spec, run.fatal
    if not run.result:
        return _report(spec, fatal, CheckStatus.FAIL, _no_result(run), duration_s)
    data = _decode(run.result)
    try:
        if len(run.result) > RESULT_LIMIT_BYTES:
            raise ValueError(f"larger than {RESULT_LIMIT_BYTES} bytes")
        if data is None:
            raise ValueError("not a JSON object")
        facts, tags = data.get("facts", {}), data.get("tags", [])
        if not isinstance(facts, dict) or not isinstance(tags, list):
            raise ValueError("facts must be an object and tags a list of strings")
        if not all(isinstance(t, str) for t in tags):
            raise ValueError("facts must be an object and tags a list of strings")
        status = CheckStatus(data.get("status"))
        message = str(data.get("message", ""))
    except ValueError as exc:
        text = f"malformed result from the check process: {exc}"
        return _report(spec, fatal, CheckStatus.FAIL, text, duration_s)
    return _report(spec, fatal, status, message, duration_s, facts, list(tags))


def _no_result(run: _Run) -> str:
    code = run.returncode
    if code is not None and code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    elif code is not None:
        how = f"exited with code {code}"
    else:
        how = "ended"
    lines = run.output.decode("utf-8", "replace").strip().splitlines()
    last = f": {lines[-1].strip()}" if lines else ""
    return f"check process {how} without a result{last}"


def _report(
    spec: CheckSpec,
    fatal: bool,
    status: CheckStatus,
    message: str,
    duration_s: float = 0.0,
    facts: Optional[dict[str, Any]] = None,
    tags: Optional[list[str]] = None,
) -> CheckReport:
    return CheckReport(
        name=spec.name,
        status=status,
        message=message,
        facts=facts or {},
        tags=tags or [],
        fatal=fatal,
        duration_s=round(max(duration_s, 0.0), 4),
        source=spec.source.value,
    )
