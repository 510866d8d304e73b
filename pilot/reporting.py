"""Job status reports to the coordinator, and what happens when they do not get through.

- Running: with a coordinator that offers ``Feature.RUNNING_IN_HEARTBEAT``, the payload
  starts as soon as it is set up and its start rides the pilot's next heartbeat
  (``pilot.heartbeats``), or its final report if it ends first: the match already made the
  job this pilot's, for ``JobAssignment.lease_s``, and a heartbeat refused kills it.
  With an older coordinator, Running is sent before the payload starts; if the coordinator
  refuses it (the job is not this pilot's any more) or cannot be reached, the payload is
  not started: a job whose Running was not confirmed may already be on its way to another
  pilot.
- Final state: retried for ``report_retry_s``; if the coordinator still cannot be reached,
  kept in the spool (``pilot.spool``) and sent again later, from the loop, without holding
  up the other slots. A refused final report (lease lost) is logged and dropped: the job
  is somebody else's now. An output archive the wrapper could not upload goes first, and
  into the spool with the report when it still cannot.

Every report carries a ``request_id`` of its own, the same for all its retries and resends
(it is in the spooled report): the coordinator applies it once, so a retry after a lost
reply changes nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import uuid
from pathlib import Path
from typing import Callable, Optional

from pilot.client import CoordinatorClient, RetryPolicy
from pilot.errors import CoordinatorRejected, CoordinatorUnreachable
from pilot.spool import ResultSpool, SpooledReport
from protocol import JobAssignment, JobStatus, JobStatusUpdate
from wrapper.outcome import JobOutcome, MinorStatus

logger = logging.getLogger(__name__)

SPOOL_RESEND_RETRY = RetryPolicy(max_retry_s=0.0)
"""One attempt per kept report and round: the loop tries again next round."""

NOT_CONFIRMED_MINOR = "Running not confirmed by the coordinator"


class RunningAnswer(enum.Enum):
    CONFIRMED = "confirmed"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    IN_HEARTBEAT = "in_heartbeat"
    """Not asked: the start rides the next heartbeat (or the final report)."""


class JobReporter:
    def __init__(
        self,
        client: CoordinatorClient,
        spool: ResultSpool,
        report_retry_s: float,
        hurry: Optional[Callable[[], bool]] = None,
    ):
        self._client = client
        self._spool = spool
        # When the pilot must exit now, a report that does not get through goes to the
        # spool at once instead of holding the exit for report_retry_s.
        self._final_retry = RetryPolicy(max_retry_s=report_retry_s, give_up=hurry)

    def report_running(self, pilot_id: str, job_id: int) -> RunningAnswer:
        update = JobStatusUpdate(
            status=JobStatus.RUNNING, minor_status="Application", request_id=new_request_id()
        )
        try:
            self._client.update_status(pilot_id, job_id, update)
        except CoordinatorRejected as exc:
            logger.warning("job %d: Running refused (%s): not starting it", job_id, exc)
            return RunningAnswer.REFUSED
        except CoordinatorUnreachable as exc:
            logger.error("job %d: Running not confirmed (%s): not starting it", job_id, exc)
            return RunningAnswer.UNREACHABLE
        return RunningAnswer.CONFIRMED

    def report_final(
        self,
        pilot_id: str,
        job_id: int,
        update: JobStatusUpdate,
        output_archive: Optional[Path] = None,
    ) -> bool:
        """Send the final state (its output archive first, if the wrapper kept one); True
        when the coordinator has it (or refused it for good), False when it was spooled."""
        logger.info("job %d: %s (%s)", job_id, update.status.value, update.minor_status)
        report = SpooledReport(pilot_id, job_id, update, str(output_archive or ""))
        try:
            self._deliver(report, self._final_retry)
        except CoordinatorUnreachable as exc:
            logger.warning("job %d: final status not delivered yet: %s", job_id, exc)
            self._spool.save(report)
            return False
        return True

    def _deliver(self, report: SpooledReport, retry: RetryPolicy) -> None:
        """Upload the kept output archive, then send the report; a refusal is logged (an
        archive refused for good fails a Done job as its upload would have)."""
        update = report.update
        if report.output_archive:
            archive = Path(report.output_archive)
            try:
                self._client.upload_sandbox(archive, update.output_sandbox, retry=retry)
                logger.info("job %d: kept output sandbox delivered", report.job_id)
            except CoordinatorRejected as exc:
                logger.error("job %d: output sandbox refused: %s", report.job_id, exc)
                update = _upload_failed(update)
            archive.unlink(missing_ok=True)
        try:
            self._client.update_status(report.pilot_id, report.job_id, update, retry=retry)
        except CoordinatorRejected as exc:
            logger.error("job %d: final status refused: %s", report.job_id, exc)

    def resend_spooled(self) -> int:
        """Send kept reports again, oldest first, until one fails to get through; how many left."""
        for report in self._spool.pending():
            try:
                self._deliver(report, SPOOL_RESEND_RETRY)
            except CoordinatorUnreachable:
                if report.output_archive and not Path(report.output_archive).exists():
                    self._spool.save(dataclasses.replace(report, output_archive=""))
                break
            logger.info("job %d: kept final status delivered", report.job_id)
            self._spool.remove(report)
        return len(self._spool)

    def flush_at_exit(self) -> None:
        """Last try for kept reports; what is left waits for the next pilot in this work dir."""
        if len(self._spool) and self.resend_spooled():
            logger.warning(
                "%d final report(s) not delivered; kept in %s for the next pilot",
                len(self._spool),
                self._spool.directory,
            )


def _upload_failed(update: JobStatusUpdate) -> JobStatusUpdate:
    """``update`` without its output sandbox; a Done job fails as the node's fault."""
    update = dataclasses.replace(update, output_sandbox="")
    if update.status is not JobStatus.DONE:
        return update
    return dataclasses.replace(
        update,
        status=JobStatus.FAILED,
        minor_status=MinorStatus.OUTPUT_UPLOAD_FAILED.value,
        infrastructure_error=True,
    )


def new_request_id() -> str:
    """A report's or a match's id, the same for all its retries (``protocol``)."""
    return uuid.uuid4().hex


LEASE_EXPIRED_MINOR = "Job stopped: its lease could not be renewed"


def final_update(
    outcome: Optional[JobOutcome],
    match_s: float,
    running: Optional[RunningAnswer],
    log_offsets: Optional[dict[str, int]] = None,
    lease_expired: bool = False,
) -> Optional[JobStatusUpdate]:
    """The final report of a job, or None when nothing must be said about it: status,
    output sandbox and where its logs end (``log_offsets``), in one request; ``started``
    when the payload was started (a job whose start has not ridden a heartbeat yet goes
    through Running at the coordinator first)."""
    if running is RunningAnswer.REFUSED:
        return None  # the job is not ours: whatever we say would be refused
    if lease_expired:
        # Stopped by this pilot, not by its owner: the coordinator reschedules it (if it has
        # not already given it to another pilot, when this report is refused).
        return JobStatusUpdate(
            status=JobStatus.FAILED,
            minor_status=LEASE_EXPIRED_MINOR,
            infrastructure_error=True,
            started=_payload_ran(outcome, running),
            log_offsets=log_offsets or {},
            request_id=new_request_id(),
        )
    if running is RunningAnswer.UNREACHABLE:
        # Not started; Failed with infrastructure_error asks the coordinator to reschedule.
        return JobStatusUpdate(
            status=JobStatus.FAILED,
            minor_status=NOT_CONFIRMED_MINOR,
            infrastructure_error=True,
            request_id=new_request_id(),
        )
    if outcome is None:
        return JobStatusUpdate(
            status=JobStatus.FAILED,
            minor_status="Job wrapper crashed",
            infrastructure_error=True,
            request_id=new_request_id(),
        )
    update = dataclasses.replace(outcome.to_status_update(match_s), request_id=new_request_id())
    started = _payload_ran(outcome, running)
    if started or log_offsets:
        update = dataclasses.replace(update, started=started, log_offsets=log_offsets or {})
    return update


def _payload_ran(outcome: Optional[JobOutcome], running: Optional[RunningAnswer]) -> bool:
    # The wrapper times the payload only once it has run.
    return outcome is not None and running is not None and "payload" in outcome.timings_s


def held_resources(update: JobStatusUpdate, assignment: JobAssignment) -> JobStatusUpdate:
    """``update`` saying what the job held: its CPU efficiency counts these cores."""
    return dataclasses.replace(update, cores=assignment.cores, gpus=len(assignment.gpus))
