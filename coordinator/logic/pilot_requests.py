"""How long the coordinator remembers pilots' request ids (match and report retries).

A pilot retries one request for at most its ``max_retry_s`` (300 s by default) or, for a
final report, until its spool gives up; a day covers every retry of every pilot with room
to spare, and the table stays as small as a day's requests.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from coordinator.store import requests as request_store
from coordinator.store.database import Database
from coordinator.store.schema import utc_timestamp

logger = logging.getLogger(__name__)

REQUEST_MEMORY_S = 24 * 3600.0


def forget_old(db: Database, now: datetime) -> int:
    """Drop request ids older than ``REQUEST_MEMORY_S``; how many were dropped."""
    before = utc_timestamp(now - timedelta(seconds=REQUEST_MEMORY_S))
    with db.read() as conn:  # the write lock only when there is something to drop
        if not request_store.any_before(conn, before):
            return 0
    with db.write() as conn:
        dropped = request_store.forget_before(conn, before)
    if dropped:
        logger.info("forgot %d pilot request id(s) older than a day", dropped)
    return dropped
