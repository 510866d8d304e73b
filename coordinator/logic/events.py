"""The live event stream: job status changes and log appends for what the caller may see.

Events are rows of the ``job_events`` table, written in the same transaction as the change
they announce (``store.jobs.add_history`` and the log append), so any coordinator replica on
the same database serves the same stream with the same ids, and a client that reconnects
elsewhere resumes from its ``Last-Event-ID``.

A reader must never skip an event that commits late. On SQLite writers take turns, so ids
commit in order; on PostgreSQL a sequence hands out ids before commit, so id 7 may become
visible after id 8. ``EventCursor`` therefore advances only over ids that are contiguous,
and treats a hole as a transaction still in flight for ``gap_wait_s`` (then as an id a
rolled-back transaction used up).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from sqlalchemy import RowMapping

from coordinator.logic.auth import TokenClaims
from coordinator.logic.logs import LogFiles
from coordinator.store import events as event_store
from coordinator.store.database import Database
from coordinator.store.schema import utc_timestamp
from protocol import Role

MAX_LOG_EVENT_BYTES = 64 * 1024
"""A log event carries at most this much text; ``truncated`` tells the client to read the
rest through the logs API."""
BATCH = 500
GAP_WAIT_S = 5.0


@dataclasses.dataclass(frozen=True)
class StreamScope:
    """What one stream shows: the caller's jobs (every job for admins), one job or all,
    with or without log appends."""

    owner: Optional[str]
    vo: Optional[str]
    job_id: Optional[int] = None
    logs: bool = True

    @classmethod
    def for_caller(
        cls, claims: TokenClaims, job_id: Optional[int] = None, logs: bool = True
    ) -> StreamScope:
        if claims.role is Role.ADMIN:
            return cls(owner=None, vo=None, job_id=job_id, logs=logs)
        return cls(owner=claims.subject, vo=claims.vo, job_id=job_id, logs=logs)


@dataclasses.dataclass(frozen=True)
class Event:
    event_id: int
    kind: str
    data: dict[str, Any]

    def to_sse(self) -> str:
        payload = json.dumps(self.data, separators=(",", ":"))
        return f"id: {self.event_id}\nevent: {self.kind}\ndata: {payload}\n\n"


def reset_event(last_id: int) -> str:
    """Sent when the client's ``Last-Event-ID`` is older than what is kept: it must reload."""
    return f"id: {last_id}\nevent: reset\ndata: {{}}\n\n"


@dataclasses.dataclass
class EventCursor:
    """Where one stream is: the last id passed over, and the holes waiting to fill."""

    position: int
    gap_wait_s: float = GAP_WAIT_S
    clock: Callable[[], float] = time.monotonic
    holes: dict[int, float] = dataclasses.field(default_factory=dict)

    def advance(self, existing_ids: list[int]) -> int:
        """Given the ids now stored above ``position`` (ascending), move over every id
        that is there or has been missing for ``gap_wait_s``; return the new position."""
        now = self.clock()
        present = set(existing_ids)
        position = self.position
        top = existing_ids[-1] if existing_ids else position
        for missing in set(range(position + 1, top)) - present:
            self.holes.setdefault(missing, now)  # all of one poll's holes age together
        while position < top:
            nxt = position + 1
            if nxt not in present and now - self.holes[nxt] < self.gap_wait_s:
                break
            self.holes.pop(nxt, None)
            position = nxt
        self.position = position
        return position


def start_position(db: Database, last_event_id: Optional[int]) -> tuple[int, bool]:
    """Where a new stream starts, and whether the client must reload (its last id is gone)."""
    with db.read() as conn:
        newest = event_store.last_event_id(conn)
        if last_event_id is None or last_event_id > newest:
            return newest, False
        oldest = event_store.first_event_id(conn)
    if oldest and last_event_id < oldest - 1:
        return newest, True  # some of what it missed is gone: it reloads, then follows
    return last_event_id, False


def poll(db: Database, files: LogFiles, scope: StreamScope, cursor: EventCursor) -> list[Event]:
    """The events past ``cursor`` that ``scope`` may see; moves the cursor."""
    kinds = (event_store.STATUS, event_store.LOG) if scope.logs else (event_store.STATUS,)
    with db.read() as conn:
        stored = event_store.ids_after(conn, cursor.position, BATCH)
        if not stored:
            return []
        low = cursor.position
        high = cursor.advance(stored)
        if high == low:
            return []
        rows = event_store.events_after(
            conn,
            low,
            owner=scope.owner,
            vo=scope.vo,
            job_id=scope.job_id,
            kinds=kinds,
            limit=BATCH,
        )
    return [_event(row, files) for row in rows if int(row["event_id"]) <= high]


def _event(row: RowMapping, files: LogFiles) -> Event:
    job_id = int(row["job_id"])
    data: dict[str, Any] = {"job_id": job_id, "at": row["at"]}
    if row["kind"] == event_store.STATUS:
        data.update(
            status=row["status"],
            minor_status=row["minor_status"],
            application_status=row["application_status"],
        )
    else:
        offset, size = int(row["offset"]), int(row["size_bytes"])
        shown = min(size, MAX_LOG_EVENT_BYTES)
        raw = files.read(files.job_key(job_id, row["stream"]), offset, shown)
        data.update(
            stream=row["stream"],
            offset=offset,
            size_bytes=size,
            text=raw.decode("utf-8", errors="replace"),
            truncated=shown < size,
        )
    return Event(int(row["event_id"]), str(row["kind"]), data)


def prune(db: Database, retention_s: float, now: Optional[datetime] = None) -> int:
    """Forget events older than ``retention_s``; safe on every replica at once."""
    moment = now if now is not None else datetime.now(timezone.utc)
    cutoff = utc_timestamp(moment - timedelta(seconds=retention_s))
    with db.write() as conn:
        return event_store.prune_before(conn, cutoff)
