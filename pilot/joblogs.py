"""The pilot's side of live job logs: a ``LogShipper`` per job, sending through the client.

The shipper (``wrapper.logstream``) knows only gaps, refusals and silence; this module
turns the client's errors into those. A chunk is tried once: a coordinator that does not
answer is tried again next interval, from the same offset.
"""

from __future__ import annotations

from pathlib import Path

from pilot.client import CoordinatorClient, RetryPolicy
from pilot.errors import CoordinatorRejected, CoordinatorUnreachable, PilotExiting
from protocol import ErrorCode, JobAssignment
from wrapper.logstream import (
    LogGap,
    LogGiveUp,
    LogRefused,
    LogShipper,
    LogUnreachable,
    stream_files,
)

CHUNK_RETRY = RetryPolicy(max_retry_s=0.0)
"""One attempt per chunk: the shipper's next interval is the retry."""


class JobLogSender:
    """``send(stream, offset, data)`` for one job, in the terms of ``wrapper.logstream``."""

    def __init__(self, client: CoordinatorClient, pilot_id: str, job_id: int) -> None:
        self._client = client
        self._pilot_id = pilot_id
        self._job_id = job_id

    def __call__(self, stream: str, offset: int, data: bytes) -> int:
        try:
            return self._client.append_job_log(
                self._pilot_id, self._job_id, stream, offset, data, retry=CHUNK_RETRY
            )
        except PilotExiting as exc:
            raise LogGiveUp(str(exc)) from exc
        except CoordinatorUnreachable as exc:
            raise LogUnreachable(str(exc)) from exc
        except CoordinatorRejected as exc:
            expected = exc.details.get("expected_offset")
            if exc.code == ErrorCode.LOG_GAP and isinstance(expected, int):
                raise LogGap(expected) from exc
            raise LogRefused(str(exc)) from exc


def job_log_shipper(
    client: CoordinatorClient, pilot_id: str, assignment: JobAssignment, workdir: Path
) -> LogShipper:
    """A shipper (not started) for the job's StdOutput and StdError files in ``workdir``."""
    files = stream_files(workdir, assignment.stdout, assignment.stderr)
    sender = JobLogSender(client, pilot_id, assignment.job_id)
    return LogShipper(files, sender, label=f"job {assignment.job_id}")
