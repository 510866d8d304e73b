"""Queries on revoked token ids."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, and_, or_, select

from coordinator.store.dialects import insert_missing
from coordinator.store.precompiled import Row
from coordinator.store.schema import revoked_tokens, utc_timestamp


def revoke(conn: Connection, token_id: str, revoked_by: str, reason: str) -> bool:
    """Record ``token_id`` as revoked; False if it already was (the first record stays)."""
    row = {"token_id": token_id, "revoked_at": utc_timestamp(), "revoked_by": revoked_by}
    return insert_missing(conn, revoked_tokens, [{**row, "reason": reason}], ["token_id"]) == 1


def get_revoked(conn: Connection, token_id: str) -> Row | None:
    query = select(revoked_tokens).where(revoked_tokens.c.token_id == token_id)
    return conn.execute(query).mappings().first()


def list_revoked(
    conn: Connection, *, limit: int | None = None, after: tuple[str, str] | None = None
) -> Sequence[Row]:
    """Revocations oldest first; those after ``(revoked_at, token_id)`` when given."""
    query = (
        select(revoked_tokens)
        .order_by(revoked_tokens.c.revoked_at, revoked_tokens.c.token_id)
        .limit(limit)
    )
    if after is not None:
        at, token_id = after
        query = query.where(
            or_(
                revoked_tokens.c.revoked_at > at,
                and_(revoked_tokens.c.revoked_at == at, revoked_tokens.c.token_id > token_id),
            )
        )
    return conn.execute(query).mappings().all()


def revoked_ids(conn: Connection) -> set[str]:
    return set(conn.execute(select(revoked_tokens.c.token_id)).scalars())
