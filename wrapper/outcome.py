"""What a finished job reports: final state, minor status, exit code, resources.

Minor statuses are ``MinorStatus`` values, some followed by ``": <detail>"``. A payload
ended by signal N reports exit code 128 + N and the application status
"Killed by signal N (SIGNAME)".

Whose fault a failure is decides whether the coordinator reschedules the job
(``infrastructure_error``): ``judge`` says it for a payload that ran, ``FAILURES`` (the
one table) for an error raised on the way there, by step and exception class.
"""

from __future__ import annotations

import dataclasses
import enum
import operator
import signal as signals
from typing import Callable, Optional

from protocol import JobStatus, JobStatusUpdate
from wrapper.errors import (
    ChecksumMismatch,
    ContainerImageNotFound,
    ContainerRuntimeFailed,
    ExecutableNotFound,
    ImageNotAllowed,
    PayloadStartError,
    RuntimeFailure,
    RuntimeUnavailable,
    SandboxError,
    UnsafeSandbox,
)
from wrapper.runtime import ContainerFault, RunResult


class MinorStatus(str, enum.Enum):
    """Fixed parts of the minor statuses a job can end with."""

    EXECUTION_COMPLETE = "Execution Complete"
    APPLICATION_ERRORS = "Application Finished With Errors"
    APPLICATION_NOT_FOUND = "Application Not Found"
    APPLICATION_NOT_STARTED = "Application Could Not Start"
    KILLED = "Killed"
    WORKDIR_UNAVAILABLE = "Work Directory Unavailable"
    INPUT_DOWNLOAD_FAILED = "Input Sandbox Download Failed"
    INPUT_CHECKSUM_MISMATCH = "Input Sandbox Checksum Mismatch"
    INPUT_UNSAFE = "Unsafe Input Sandbox"
    INPUT_UNREADABLE = "Input Sandbox Unreadable"
    INPUT_UNPACK_FAILED = "Input Sandbox Unpack Failed"
    INVALID_OUTPUT_NAME = "Invalid StdOutput Or StdError"
    RUNTIME_UNAVAILABLE = "Runtime Unavailable"
    RUNTIME_FAILURE = "Runtime Failure"
    CONTAINER_IMAGE_NOT_FOUND = "Container Image Not Found"
    CONTAINER_RUNTIME_FAILED = "Container Runtime Failed"
    CONTAINER_IMAGE_NOT_ALLOWED = "Container Image Not Allowed"
    OUTPUT_OVER_LIMIT = "Output Sandbox Over Limit"
    OUTPUT_PACK_FAILED = "Output Sandbox Packing Failed"
    OUTPUT_UPLOAD_FAILED = "Output Sandbox Upload Failed"
    OUTPUT_TREE_TOO_LARGE = "Output Sandbox Not Collected"

    def with_detail(self, detail: str) -> str:
        return f"{self.value}: {detail}" if detail else self.value


@dataclasses.dataclass(frozen=True)
class JobOutcome:
    """How the job ended, ready to become the final ``JobStatusUpdate``."""

    status: JobStatus
    minor_status: str
    application_status: str
    exit_code: Optional[int]
    output_sandbox: str
    timings_s: dict[str, float]
    cpu_s: float
    max_rss_bytes: int
    infrastructure_error: bool
    output_missing: list[str] = dataclasses.field(default_factory=list)
    """Output patterns that matched nothing."""
    output_left_out: list[str] = dataclasses.field(default_factory=list)
    """Output files not uploaded because the sandbox would have gone over its cap."""
    broken_runtime: str = ""
    """The container runtime that failed on its own (Container Runtime Failed): the pilot
    stops offering it."""
    output_pending: str = ""
    """Path of the output archive (``output_sandbox`` names its sha256) the transport could
    not deliver: the pilot sends it before the final report, or keeps both in its spool."""

    def to_status_update(self, match_s: Optional[float] = None) -> JobStatusUpdate:
        """The final report; ``match_s`` (the pilot's match request) joins the timings."""
        timings = dict(self.timings_s)
        if match_s is not None:
            timings["match"] = round(match_s, 6)
        return JobStatusUpdate(
            status=self.status,
            minor_status=self.minor_status,
            application_status=self.application_status,
            exit_code=self.exit_code,
            output_sandbox=self.output_sandbox,
            timings_s=timings,
            cpu_s=self.cpu_s,
            max_rss_bytes=self.max_rss_bytes,
            infrastructure_error=self.infrastructure_error,
        )


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A job's final state before the output sandbox is accounted for."""

    status: JobStatus
    minor_status: str
    infrastructure_error: bool = False
    application_status: str = ""
    exit_code: Optional[int] = None

    def output_refused(self, minor: str) -> Verdict:
        """The payload's own output could not be collected: a job that had succeeded fails,
        as the payload's fault (not rescheduled); other verdicts stand."""
        if self.status != JobStatus.DONE:
            return self
        return dataclasses.replace(
            self, status=JobStatus.FAILED, minor_status=minor, infrastructure_error=False
        )

    def stage_out_failed(self, minor: MinorStatus) -> Verdict:
        """A failed stage-out fails a job that had succeeded; other verdicts stand."""
        if self.status != JobStatus.DONE:
            return self
        return dataclasses.replace(
            self, status=JobStatus.FAILED, minor_status=minor.value, infrastructure_error=True
        )


def application_status(result: RunResult) -> str:
    """How the payload ended, in words: exit code or killing signal."""
    if result.signal is not None:
        try:
            name = signals.Signals(result.signal).name
        except ValueError:
            name = "unknown"
        return f"Killed by signal {result.signal} ({name})"
    return f"Exit code {result.exit_code}"


_INFRASTRUCTURE_MINOR = {
    ContainerFault.IMAGE.value: MinorStatus.CONTAINER_IMAGE_NOT_FOUND,
    ContainerFault.RUNTIME.value: MinorStatus.CONTAINER_RUNTIME_FAILED,
}


def judge(result: RunResult, limit_exceeded: str = "") -> Verdict:
    """The job's state from how its payload ended.

    ``limit_exceeded`` is the watchdog's minor status when it killed the payload for going
    over a limit: the job then fails (as DIRAC's watchdog fails it), it is not Killed.
    """
    status, infrastructure = JobStatus.FAILED, False
    if limit_exceeded:
        minor = limit_exceeded
    elif result.killed_reason:
        status, minor = JobStatus.KILLED, MinorStatus.KILLED.with_detail(result.killed_reason)
    elif result.infrastructure_error:
        minor = _INFRASTRUCTURE_MINOR.get(
            result.container_fault, MinorStatus.RUNTIME_FAILURE
        ).with_detail(result.infrastructure_error)
        infrastructure = True
    elif result.shell_exit_code == 0:
        status, minor = JobStatus.DONE, MinorStatus.EXECUTION_COMPLETE.value
    else:
        minor = MinorStatus.APPLICATION_ERRORS.value
    return Verdict(
        status=status,
        minor_status=minor,
        infrastructure_error=infrastructure,
        application_status=application_status(result),
        exit_code=result.shell_exit_code,
    )


class Step(enum.Enum):
    """Where, before or around the payload, an error was raised."""

    WORKDIR = "workdir"
    DOWNLOAD = "download"
    """The transport fetching an input sandbox (the pilot's client: any error)."""
    UNPACK = "unpack"
    RUNTIME = "runtime"
    """Choosing the runtime for the job."""
    START = "start"
    """The runtime starting the payload."""


def _no_detail(_exc: BaseException) -> str:
    return ""


@dataclasses.dataclass(frozen=True)
class Failure:
    """One row of ``FAILURES``: an error of ``error`` raised at ``step`` ends the job so."""

    step: Step
    error: type[BaseException]
    minor: MinorStatus
    infrastructure: bool
    detail: Callable[[BaseException], str] = _no_detail


FAILURES: tuple[Failure, ...] = (
    Failure(Step.WORKDIR, OSError, MinorStatus.WORKDIR_UNAVAILABLE, True),
    Failure(Step.DOWNLOAD, ChecksumMismatch, MinorStatus.INPUT_CHECKSUM_MISMATCH, True),
    Failure(Step.DOWNLOAD, Exception, MinorStatus.INPUT_DOWNLOAD_FAILED, True),
    Failure(Step.UNPACK, UnsafeSandbox, MinorStatus.INPUT_UNSAFE, False, str),
    Failure(Step.UNPACK, SandboxError, MinorStatus.INPUT_UNREADABLE, False),
    Failure(Step.UNPACK, OSError, MinorStatus.INPUT_UNPACK_FAILED, True),
    Failure(Step.RUNTIME, ImageNotAllowed, MinorStatus.CONTAINER_IMAGE_NOT_ALLOWED, False, str),
    Failure(Step.RUNTIME, RuntimeUnavailable, MinorStatus.RUNTIME_UNAVAILABLE, True, str),
    Failure(
        Step.START,
        ExecutableNotFound,
        MinorStatus.APPLICATION_NOT_FOUND,
        False,
        operator.attrgetter("executable"),
    ),
    Failure(Step.START, PayloadStartError, MinorStatus.APPLICATION_NOT_STARTED, False, str),
    Failure(Step.START, RuntimeUnavailable, MinorStatus.RUNTIME_UNAVAILABLE, True, str),
    Failure(Step.START, ContainerImageNotFound, MinorStatus.CONTAINER_IMAGE_NOT_FOUND, True, str),
    Failure(Step.START, ContainerRuntimeFailed, MinorStatus.CONTAINER_RUNTIME_FAILED, True, str),
    Failure(Step.START, RuntimeFailure, MinorStatus.RUNTIME_FAILURE, True, str),
)
"""Whose fault each error is, by step; the first row matching the step and error wins
(subclasses before their bases). The user's (``infrastructure`` False): the job fails for
good. The node's: the coordinator reschedules it elsewhere."""

CAUGHT: dict[Step, tuple[type[BaseException], ...]] = {
    step: tuple(row.error for row in FAILURES if row.step is step) for step in Step
}
"""The errors ``FAILURES`` has a row for at each step: what the wrapper catches there."""


def blame(step: Step, error: BaseException) -> Verdict:
    """The Failed verdict for ``error`` raised at ``step`` (one of ``CAUGHT[step]``)."""
    row = next(r for r in FAILURES if r.step is step and isinstance(error, r.error))
    minor = row.minor.with_detail(row.detail(error))
    return Verdict(JobStatus.FAILED, minor, infrastructure_error=row.infrastructure)
