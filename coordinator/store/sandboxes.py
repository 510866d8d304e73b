"""Queries on stored sandboxes and on who may read them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, RowMapping, exists, insert, select

from coordinator.store.schema import (
    job_sandboxes,
    jobs,
    pilots,
    sandbox_uploaders,
    sandboxes,
    utc_timestamp,
)


def get_sandbox(conn: Connection, sha256: str) -> RowMapping | None:
    query = select(sandboxes).where(sandboxes.c.sha256 == sha256)
    return conn.execute(query).mappings().first()


def record_upload(conn: Connection, sha256: str, size_bytes: int, subject: str, vo: str) -> bool:
    """Remember a stored sandbox and its uploader; True if the sandbox was new."""
    created = get_sandbox(conn, sha256) is None
    if created:
        conn.execute(
            insert(sandboxes).values(
                sha256=sha256,
                size_bytes=size_bytes,
                subject=subject,
                vo=vo,
                created_at=utc_timestamp(),
            )
        )
    known = select(
        exists().where(
            sandbox_uploaders.c.sha256 == sha256,
            sandbox_uploaders.c.subject == subject,
            sandbox_uploaders.c.vo == vo,
        )
    )
    if not conn.scalar(known):
        conn.execute(insert(sandbox_uploaders).values(sha256=sha256, subject=subject, vo=vo))
    return created


def missing(conn: Connection, digests: Sequence[str]) -> list[str]:
    """The digests in ``digests`` that are not stored, in the order given."""
    if not digests:
        return []
    query = select(sandboxes.c.sha256).where(sandboxes.c.sha256.in_(list(digests)))
    present = set(conn.scalars(query))
    return [digest for digest in digests if digest not in present]


def uploaded_by(conn: Connection, sha256: str, subject: str, vo: str) -> bool:
    query = select(
        exists().where(
            sandbox_uploaders.c.sha256 == sha256,
            sandbox_uploaders.c.subject == subject,
            sandbox_uploaders.c.vo == vo,
        )
    )
    return bool(conn.scalar(query))


def linked_to_owner(conn: Connection, sha256: str, owner: str, vo: str) -> bool:
    """Is the sandbox an input or output of one of ``owner``'s jobs?"""
    query = select(
        exists().where(
            job_sandboxes.c.sha256 == sha256,
            job_sandboxes.c.job_id == jobs.c.job_id,
            jobs.c.owner == owner,
            jobs.c.vo == vo,
        )
    )
    return bool(conn.scalar(query))


def linked_to_pilot_subject(conn: Connection, sha256: str, subject: str, vo: str) -> bool:
    """Is the sandbox part of a job matched to a pilot registered with this token subject?"""
    query = select(
        exists().where(
            job_sandboxes.c.sha256 == sha256,
            job_sandboxes.c.job_id == jobs.c.job_id,
            jobs.c.pilot_id == pilots.c.pilot_id,
            pilots.c.subject == subject,
            pilots.c.vo == vo,
        )
    )
    return bool(conn.scalar(query))
