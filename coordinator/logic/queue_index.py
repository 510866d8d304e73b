"""The task queues of each VO, kept in memory for matching: a hint, never the authority.

A match chooses the queues that fit the pilot, and the owner to serve, from this index
without reading the task_queues table; the database decides in the claim itself (an
``UPDATE ... RETURNING`` of Waiting jobs, ``coordinator.store.taskqueues.claim_waiting``).
A stale index therefore costs at most an empty claim and a reload, never a job given twice,
and coordinators sharing one database each keep their own.

Per VO it holds each queue's id, owner and decoded requirements, and the queues a claim
found empty ("dry", skipped until the next load). A VO is (re)loaded from the database when
first asked for (after a restart: the index starts empty), after a submission to this
coordinator (``forget``), once its load is older than ``REFRESH_S``, and when a match
found nothing (a submission to another coordinator, or a job put back to Waiting, since
the last load): one read of the VO's queues, as every match did before the index.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Callable

from sqlalchemy import Connection

from coordinator.logic.matching import Requirements
from coordinator.store import taskqueues as tq_store

REFRESH_S = 2.0
"""Longest a VO's index goes without a reload: how late a dry queue refilled by another
coordinator (or a new one) is seen by a pilot that has other work to get meanwhile."""


@dataclasses.dataclass(frozen=True)
class IndexedQueue:
    task_queue_id: int
    owner: str
    needs: Requirements


@dataclasses.dataclass
class _VoQueues:
    queues: list[IndexedQueue]
    loaded_at: float
    dry: set[int] = dataclasses.field(default_factory=set)


class QueueIndex:
    """Thread-safe: the event loop's thread and worker threads match at once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._vos: dict[str, _VoQueues] = {}
        self._requirements: dict[str, Requirements] = {}

    def queues(self, conn: Connection, vo: str) -> list[IndexedQueue]:
        """The VO's queues not known to be dry, loading them first when due."""
        with self._lock:
            entry = self._vos.get(vo)
        if entry is None or self._clock() - entry.loaded_at >= REFRESH_S:
            entry = self._load(conn, vo)
        dry = entry.dry
        return [queue for queue in entry.queues if queue.task_queue_id not in dry]

    def reload(self, conn: Connection, vo: str) -> None:
        """Read the VO's queues again (a match found nothing in the ones it knew)."""
        self._load(conn, vo)

    def forget(self, vo: str) -> None:
        """Drop the VO: its next match reads its queues (new jobs were just submitted)."""
        with self._lock:
            self._vos.pop(vo, None)

    def mark_dry(self, vo: str, task_queue_ids: Iterable[int]) -> None:
        with self._lock:
            entry = self._vos.get(vo)
            if entry is not None:
                entry.dry.update(task_queue_ids)

    def _load(self, conn: Connection, vo: str) -> _VoQueues:
        rows = tq_store.queues_of_vo(conn, vo)
        queues = [
            IndexedQueue(int(row["task_queue_id"]), str(row["owner"]), self._needs(row))
            for row in rows
        ]
        entry = _VoQueues(queues, self._clock())
        with self._lock:
            self._vos[vo] = entry
        return entry

    def _needs(self, row: Mapping[str, Any]) -> Requirements:
        """A queue's requirements, decoded once per process: a ``queue_key`` is the digest
        of the requirement columns, so the same key always means the same requirements."""
        key = str(row["queue_key"])
        found = self._requirements.get(key)
        if found is None:
            if len(self._requirements) >= MAX_REQUIREMENTS:
                self._requirements.clear()
            found = self._requirements[key] = requirements(row)
        return found


MAX_REQUIREMENTS = 100_000


def requirements(row: Mapping[Any, Any]) -> Requirements:
    """The requirements stored in a task queue (or job) row."""
    return Requirements(
        vo=row["vo"],
        sites=frozenset(json.loads(row["req_sites"])),
        banned_sites=frozenset(json.loads(row["banned_sites"])),
        platform=row["platform"],
        tags=frozenset(json.loads(row["tags"])),
        cores=row["cores"],
        max_cores=row["max_cores"],
        max_ram_mb=row["max_ram_mb"],
        cpu_time_s=row["cpu_time_s"],
        wall_time_s=row["wall_time_s"],
        container=row["container"],
        gpus=int(row["gpus"] or 0),
        gpu_memory_mb=int(row["gpu_memory_mb"] or 0),
        gpu_capability=str(row["gpu_capability"] or ""),
        gpu_models=frozenset(json.loads(row["gpu_models"] or "[]")),
        whole_node=bool(row["whole_node"]),
        min_cpu_score=float(row["min_cpu_score"] or 0.0),
    )
