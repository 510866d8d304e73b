"""Task queues (DIRAC's design): jobs with identical requirements and owner share a queue.

A queue is keyed by everything matching looks at — VO, owner, owner group, allowed and
banned sites, platform, tags, cores (min and max), memory, CPU and wall time, container —
so that deciding whether a pilot can take a queue's jobs is one check per queue, not per
job. Priority is not part of the key: it orders jobs inside a queue.

Jobs keep their ``task_queue_id`` for life. A queue is deleted once none of its jobs is
unfinished (see ``UNFINISHED``), so a Matched, Running or Stalled job that goes back to
Waiting finds its queue still there; for any other path back to Waiting, call ``requeue``.

Creating and removing queues is safe with transactions side by side (PostgreSQL, several
coordinators): a queue is created with ``INSERT ... ON CONFLICT DO NOTHING`` (two
submissions creating the same queue both get it), a submission share-locks the queues it
attaches jobs to, and a queue is removed only under a row lock that such a submission
would hold back (``remove_if_done`` then leaves it for a later match).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from coordinator.store import jobs as job_store
from coordinator.store import taskqueues as tq_store
from protocol import FINAL_STATUSES, JobStatus

logger = logging.getLogger(__name__)

UNFINISHED = frozenset(JobStatus) - FINAL_STATUSES - {JobStatus.COMPLETED, JobStatus.DELETED}
"""Statuses from which a job can still (come back to) wait in its queue."""


def queue_key(row: Mapping[Any, Any]) -> str:
    """A digest of a job row's queue columns: equal for jobs that share a queue."""
    values = [row.get(column) for column in tq_store.QUEUE_COLUMNS]
    canonical = json.dumps(values, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def with_queues(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Job rows about to be inserted, each with the ``task_queue_id`` of its queue
    (created on demand, in the caller's transaction)."""
    keys = [queue_key(row) for row in rows]
    columns = {key: row for key, row in zip(keys, rows)}
    ids = tq_store.queue_ids(conn, columns)
    return [{**row, "task_queue_id": ids[key]} for key, row in zip(keys, rows)]


def requeue(conn: Connection, job_ids: Sequence[int]) -> None:
    """Attach jobs going back to Waiting to their queue again (re-created if it was removed).
    Idempotent; cheap enough to call on every path that makes a job Waiting."""
    rows = job_store.get_jobs(conn, job_ids)
    keys = {queue_key(row): row for row in rows}
    ids = tq_store.queue_ids(conn, keys)
    changes = [
        {"id": int(row["job_id"]), "tq": ids[queue_key(row)]}
        for row in rows
        if row["task_queue_id"] != ids[queue_key(row)]
    ]
    tq_store.set_job_queues(conn, changes)


def remove_if_done(conn: Connection, task_queue_id: int) -> bool:
    """Delete a queue none of whose jobs can wait in it again; True if it was deleted."""
    if not tq_store.lock_queue(conn, task_queue_id):
        return False
    if tq_store.has_jobs_in(conn, task_queue_id, UNFINISHED):
        return False
    tq_store.delete_queue(conn, task_queue_id)
    logger.debug("task queue %d is empty: removed", task_queue_id)
    return True
