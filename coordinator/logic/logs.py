"""Live job logs and pilots' own logs: appended by offset, read by offset.

The bytes live in the store (``coordinator.storage``: files under ``<data_dir>/logs/`` by
default, ``<job_id>/stdout``, ``<job_id>/stderr``, ``pilots/<pilot_id>``); the ``logs``
table holds how many of them count. An append runs in
one write transaction (on SQLite ``BEGIN IMMEDIATE``, so appends are serialised): read the
stored length, compare the bytes a retried chunk repeats, truncate the file to the stored
length (dropping whatever a crashed append left past it), write the new bytes, store the new
length. A chunk is therefore never stored twice, and a lost one shows as a gap (409
``log_gap`` with ``details.expected_offset``).
"""

from __future__ import annotations

import dataclasses
import logging

from sqlalchemy import Connection

from coordinator.errors import BadRequest, LogConflict, LogGap, NotFound, TooLarge
from coordinator.logic.auth import TokenClaims
from coordinator.logic.jobs import visible_job
from coordinator.logic.pilots import leased_job, own_pilot
from coordinator.settings import Settings
from coordinator.storage import Store
from coordinator.store import events as event_store
from coordinator.store import logs as log_store
from coordinator.store import pilots as pilot_store
from coordinator.store.database import Database
from coordinator.store.precompiled import Row
from coordinator.store.schema import utc_timestamp
from protocol import FINAL_STATUSES, LOG_STREAMS, JobStatus, LogAppendReply, Role

logger = logging.getLogger(__name__)

PILOT_STREAM = "pilot"
OVER = FINAL_STATUSES | {JobStatus.COMPLETED, JobStatus.DELETED}
"""A job in these states will send no more log bytes."""


@dataclasses.dataclass(frozen=True)
class LogSlice:
    data: bytes
    next_offset: int
    size_bytes: int
    complete: bool


@dataclasses.dataclass(frozen=True)
class LogFiles:
    """Logs in the store (``coordinator.storage``): ``logs/<job id>/<stream>`` and
    ``logs/pilots/<pilot id>``."""

    store: Store

    def job_key(self, job_id: int, stream: str) -> str:
        return f"logs/{job_id}/{stream}"

    def pilot_key(self, pilot_id: str) -> str:
        return f"logs/pilots/{pilot_id}"

    def read(self, key: str, offset: int, size: int) -> bytes:
        """Up to ``size`` stored bytes from ``offset``; a log not written yet reads as empty."""
        return self.store.read_at(key, offset, size, offset + size)

    def write_at(self, key: str, offset: int, data: bytes) -> None:
        """Make the log ``offset`` bytes long, then append ``data``."""
        self.store.write_at(key, offset, data)


def check_stream(stream: str) -> str:
    if stream not in LOG_STREAMS:
        raise BadRequest(
            f"unknown log stream {stream!r}", details={"stream": stream, "allowed": LOG_STREAMS}
        )
    return stream


def check_chunk(settings: Settings, offset: int, size_bytes: int) -> None:
    if offset < 0:
        raise BadRequest("offset must not be negative", details={"offset": offset})
    if size_bytes > settings.max_log_chunk_bytes:
        raise TooLarge(
            f"log chunk of {size_bytes} bytes is larger than the limit of "
            f"{settings.max_log_chunk_bytes} bytes; send smaller chunks",
            details={"max_bytes": settings.max_log_chunk_bytes, "size_bytes": size_bytes},
        )


def append_job_log(
    db: Database,
    settings: Settings,
    files: LogFiles,
    claims: TokenClaims,
    pilot_id: str,
    job_id: int,
    stream: str,
    offset: int,
    data: bytes,
) -> LogAppendReply:
    """Append a chunk of a job's stream; only the pilot holding the job may."""
    check_stream(stream)
    check_chunk(settings, offset, len(data))
    with db.write() as conn:
        row = leased_job(conn, claims, pilot_id, job_id)
        status = JobStatus(row["status"])
        if status in OVER:
            raise LogConflict(
                f"job {job_id} is {status.value}: its logs take no more bytes",
                details={"job_id": job_id, "status": status.value},
            )
        where = (log_store.JOB, str(job_id), stream)
        before = log_store.size_of(conn, *where)
        end = _append(conn, settings, files, files.job_key(job_id, stream), where, offset, data)
        if end > before:  # the live stream's event (coordinator/logic/events.py)
            event_store.add_log_event(conn, job_id, stream, before, end - before, utc_timestamp())
        pilot_store.touch_pilot(conn, pilot_id)
    return LogAppendReply(next_offset=end)


def append_pilot_log(
    db: Database,
    settings: Settings,
    files: LogFiles,
    claims: TokenClaims,
    pilot_id: str,
    offset: int,
    data: bytes,
) -> LogAppendReply:
    """Append a chunk of a pilot's own log; only that pilot (its token) may."""
    check_chunk(settings, offset, len(data))
    with db.write() as conn:
        # Locked: two appends of one log run one after the other, on every database.
        own_pilot(conn, claims, pilot_id, lock=True)
        where = (log_store.PILOT, pilot_id, PILOT_STREAM)
        end = _append(conn, settings, files, files.pilot_key(pilot_id), where, offset, data)
        pilot_store.touch_pilot(conn, pilot_id)
    return LogAppendReply(next_offset=end)


def _append(
    conn: Connection,
    settings: Settings,
    files: LogFiles,
    key: str,
    where: tuple[str, str, str],
    offset: int,
    data: bytes,
) -> int:
    """Store ``data`` at ``offset``; return the stored length afterwards."""
    size = log_store.size_of(conn, *where)
    if offset > size:
        raise LogGap(
            f"chunk starts at byte {offset} but the stored log ends at {size}; send from {size}",
            details={"expected_offset": size, "offset": offset},
        )
    repeated = min(size - offset, len(data))
    if repeated and files.read(key, offset, repeated) != data[:repeated]:
        raise LogConflict(
            f"bytes {offset}..{offset + repeated} differ from the ones stored",
            details={"offset": offset, "size_bytes": size},
        )
    fresh = data[repeated:]
    if not fresh:
        return size
    total = log_store.total_of(conn, where[0], where[1])
    if total + len(fresh) > settings.max_log_bytes:
        raise TooLarge(
            f"the log is full: {total} bytes stored, the limit is {settings.max_log_bytes}; "
            "further bytes are refused",
            details={"max_bytes": settings.max_log_bytes, "stored_bytes": total},
        )
    files.write_at(key, size, fresh)
    log_store.set_size(conn, *where, size + len(fresh))
    return size + len(fresh)


def read_job_log(
    db: Database,
    files: LogFiles,
    claims: TokenClaims,
    job_id: int,
    stream: str,
    offset: int,
    limit: int,
) -> LogSlice:
    """Bytes of a job's stream from ``offset``: its owner's and admins' to read."""
    check_stream(stream)
    with db.read() as conn:
        row = visible_job(conn, claims, job_id)
        size = log_store.size_of(conn, log_store.JOB, str(job_id), stream)
    over = JobStatus(row["status"]) in OVER
    return _slice(files, files.job_key(job_id, stream), size, offset, limit, over)


def read_pilot_log(
    db: Database, files: LogFiles, claims: TokenClaims, pilot_id: str, offset: int, limit: int
) -> LogSlice:
    """Bytes of a pilot's log, for admins, the pilot token's subject (same VO) and the
    owners of jobs the pilot ran (what went wrong with my job may be in the pilot's log)."""
    with db.read() as conn:
        pilot = pilot_store.get_pilot(conn, pilot_id)
        if pilot is None or not _may_read_pilot_log(conn, claims, pilot):
            raise NotFound(f"no pilot {pilot_id}", details={"pilot_id": pilot_id})
        size = log_store.size_of(conn, log_store.PILOT, pilot_id, PILOT_STREAM)
    return _slice(files, files.pilot_key(pilot_id), size, offset, limit, complete=False)


def _may_read_pilot_log(conn: Connection, claims: TokenClaims, pilot: Row) -> bool:
    if claims.role is Role.ADMIN:
        return True
    if (pilot["subject"], pilot["vo"]) == (claims.subject, claims.vo):
        return True
    if claims.role is not Role.USER:
        return False
    ran = pilot_store.jobs_of(conn, [pilot["pilot_id"]])[pilot["pilot_id"]]
    return any((job["owner"], job["vo"]) == (claims.subject, claims.vo) for job in ran)


def _slice(
    files: LogFiles, key: str, size: int, offset: int, limit: int, complete: bool
) -> LogSlice:
    if offset < 0 or limit < 1:
        raise BadRequest("offset must not be negative and limit must be positive")
    start = min(offset, size)  # past the end (the log was cleared by a reschedule): its end
    data = files.read(key, start, min(limit, size - start))
    end = start + len(data)
    return LogSlice(data=data, next_offset=end, size_bytes=size, complete=complete and end >= size)
