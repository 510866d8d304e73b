"""Queries on stored sandboxes and on who owns and may read them.

A sandbox's owners are in ``sandbox_uploaders``: everyone who uploaded its bytes, and the
owner of each job it is the output of. The digest alone never grants anything."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, exists, select

from coordinator.store.dialects import insert_missing
from coordinator.store.jobs import OUT
from coordinator.store.precompiled import Row
from coordinator.store.schema import (
    job_sandboxes,
    jobs,
    pilots,
    sandbox_uploaders,
    sandboxes,
    utc_timestamp,
)


def get_sandbox(conn: Connection, sha256: str) -> Row | None:
    query = select(sandboxes).where(sandboxes.c.sha256 == sha256)
    return conn.execute(query).mappings().first()


def record_upload(conn: Connection, sha256: str, size_bytes: int, subject: str, vo: str) -> bool:
    """Remember a stored sandbox and that ``subject`` of ``vo`` owns it; True if it was not
    theirs yet (whether or not someone else had uploaded the same bytes before)."""
    row = {"sha256": sha256, "size_bytes": size_bytes, "subject": subject, "vo": vo}
    insert_missing(conn, sandboxes, [{**row, "created_at": utc_timestamp()}], ["sha256"])
    return add_owner(conn, sha256, subject, vo)


def add_owner(conn: Connection, sha256: str, subject: str, vo: str) -> bool:
    """Make ``subject`` of ``vo`` an owner of a stored sandbox; True if they were not yet."""
    row = {"sha256": sha256, "subject": subject, "vo": vo}
    return insert_missing(conn, sandbox_uploaders, [row], ["sha256", "subject", "vo"]) == 1


def missing(conn: Connection, digests: Sequence[str]) -> list[str]:
    """The digests in ``digests`` that are not stored, in the order given."""
    if not digests:
        return []
    query = select(sandboxes.c.sha256).where(sandboxes.c.sha256.in_(list(digests)))
    present = set(conn.scalars(query))
    return [digest for digest in digests if digest not in present]


def not_owned(conn: Connection, digests: Sequence[str], subject: str, vo: str) -> list[str]:
    """The digests in ``digests`` that ``subject`` of ``vo`` does not own (stored or not),
    in the order given."""
    if not digests:
        return []
    query = select(sandbox_uploaders.c.sha256).where(
        sandbox_uploaders.c.sha256.in_(list(digests)),
        sandbox_uploaders.c.subject == subject,
        sandbox_uploaders.c.vo == vo,
    )
    owned = set(conn.scalars(query))
    return [digest for digest in digests if digest not in owned]


def owned_by(conn: Connection, sha256: str, subject: str, vo: str) -> bool:
    query = select(
        exists().where(
            sandbox_uploaders.c.sha256 == sha256,
            sandbox_uploaders.c.subject == subject,
            sandbox_uploaders.c.vo == vo,
        )
    )
    return bool(conn.scalar(query))


def output_of_owner(conn: Connection, sha256: str, owner: str, vo: str) -> bool:
    """Is the sandbox the output of one of ``owner``'s jobs? (Outputs reported before
    owners were recorded for them have only this link.)"""
    query = select(
        exists().where(
            job_sandboxes.c.sha256 == sha256,
            job_sandboxes.c.kind == OUT,
            job_sandboxes.c.job_id == jobs.c.job_id,
            jobs.c.owner == owner,
            jobs.c.vo == vo,
        )
    )
    return bool(conn.scalar(query))


def linked_to_pilot_subject(conn: Connection, sha256: str, subject: str, vo: str) -> bool:
    """Is the sandbox an input or output of a job of ``vo`` held by a pilot registered with
    this token subject in ``vo``?"""
    query = select(
        exists().where(
            job_sandboxes.c.sha256 == sha256,
            job_sandboxes.c.job_id == jobs.c.job_id,
            jobs.c.vo == vo,
            jobs.c.pilot_id == pilots.c.pilot_id,
            pilots.c.subject == subject,
            pilots.c.vo == vo,
        )
    )
    return bool(conn.scalar(query))
