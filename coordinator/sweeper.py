"""The sweeper: a background task of the coordinator app that expires leases and forgets
live-stream events older than ``event_retention_s``; hourly it refreshes the query
planner's statistics (``Database.analyze``). It also forgets pilots' old request ids
(``coordinator.logic.pilot_requests``) and, on PostgreSQL, folds the job counts' deltas
into ``job_counts`` (``coordinator.store.rollup.compact``).

Started and stopped with the app (``running_sweeper`` in the app's lifespan). Every
``sweep_interval_s`` it runs ``coordinator.logic.leases.sweep`` in a worker thread, so the
database work never blocks the event loop. Several coordinator processes on one database
may each run one: every change is a conditional update in a write transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Callable

import anyio.to_thread
from sqlalchemy.exc import InterfaceError, OperationalError

from coordinator.logic import events, leases, pilot_requests
from coordinator.settings import Settings
from coordinator.store import rollup
from coordinator.store.database import Database

logger = logging.getLogger(__name__)

STATISTICS_INTERVAL_S = 3600.0
"""How often the query planner's statistics are refreshed (``Database.analyze``)."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Sweeper:
    def __init__(
        self, db: Database, settings: Settings, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._analyzed_at = -STATISTICS_INTERVAL_S  # the first sweep refreshes them

    def sweep_once(self) -> list[leases.LeaseDecision]:
        now = self._clock()
        decisions = leases.sweep(self._db, self._settings, now)
        events.prune(self._db, self._settings.event_retention_s, now)
        pilot_requests.forget_old(self._db, now)
        self.compact_counts()
        return decisions

    def compact_counts(self) -> int:
        """Fold the job counts' deltas (PostgreSQL); the replica that finds another one
        folding skips its turn (an advisory lock, tried, not waited for)."""
        if self._db.is_sqlite:
            return 0
        with self._db.write() as conn:
            return rollup.compact(conn)

    def refresh_statistics_if_due(self) -> None:
        now = time.monotonic()
        if now - self._analyzed_at >= STATISTICS_INTERVAL_S:
            self._analyzed_at = now
            self._db.analyze()

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.sweep_interval_s)
            try:
                await anyio.to_thread.run_sync(self.sweep_once)
                await anyio.to_thread.run_sync(self.refresh_statistics_if_due)
            except (OperationalError, InterfaceError) as exc:
                # The database is restarting or failing over: the next sweep will do.
                logger.warning("lease sweep: database unavailable (%s); retrying", exc.orig)
            except Exception:
                # The sweeper's boundary: a failed sweep (database locked for too long, disk
                # full) is logged and retried at the next interval instead of ending the task.
                logger.exception(
                    "lease sweep failed; retrying in %s s", self._settings.sweep_interval_s
                )


@contextlib.asynccontextmanager
async def running_sweeper(db: Database, settings: Settings) -> AsyncIterator[Sweeper]:
    """Run a ``Sweeper`` in the background for the duration of the ``async with`` block."""
    sweeper = Sweeper(db, settings)
    task = asyncio.create_task(sweeper.run_forever(), name="gridpilot-lease-sweeper")
    try:
        yield sweeper
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
