"""Token administration: revocation (checked on every request) and issuing by admins.

Revoked token ids live in the database. Each coordinator process keeps them in memory:
a revocation made through this process applies to its very next request; one made by
another process sharing the database (PostgreSQL scale-out) applies here once the list is
reloaded, at most ``revocation_refresh_s`` later.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.errors import BadRequest, Forbidden, Unauthenticated
from coordinator.logic.auth import TokenClaims, issue_token, verify_token
from coordinator.logic.paging import Page, PageRequest, paged
from coordinator.store import tokens as token_store
from coordinator.store.database import Database
from coordinator.store.precompiled import Row
from protocol import Role, TokenKind

logger = logging.getLogger(__name__)

MAX_TOKEN_ID_CHARS = 64
MAX_NAME_CHARS = 255
MAX_TTL_S = 10 * 366 * 24 * 3600
"""Longest lifetime any token may get (ten years), so expiry arithmetic never overflows."""


@dataclasses.dataclass(frozen=True)
class Revocation:
    token_id: str
    revoked_at: str
    revoked_by: str
    reason: str


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    token: str
    claims: TokenClaims


class RevocationList:
    """The revoked token ids, cached in memory and reloaded every ``refresh_s``."""

    def __init__(
        self, db: Database, refresh_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._db = db
        self._refresh_s = refresh_s
        self._clock = clock
        self._ids: frozenset[str] = frozenset()
        self._loaded_s: float | None = None
        self._lock = threading.Lock()

    def stale(self) -> bool:
        """True when the next check would reload the list from the database first."""
        return self._loaded_s is None or self._clock() - self._loaded_s >= self._refresh_s

    def reload(self) -> None:
        now = self._clock()
        with self._db.read() as conn:
            ids = token_store.revoked_ids(conn)
        with self._lock:
            self._ids, self._loaded_s = frozenset(ids), now

    def is_revoked(self, token_id: str) -> bool:
        if self.stale():
            self.reload()
        return token_id in self._ids

    def check(self, claims: TokenClaims) -> None:
        if claims.token_id and self.is_revoked(claims.token_id):
            raise Unauthenticated(
                f"token {claims.token_id} has been revoked",
                details={"token_id": claims.token_id},
            )
        if claims.via and self.is_revoked(claims.via):
            raise Unauthenticated(
                f"the login credential {claims.via} this token came from has been revoked",
                details={"token_id": claims.token_id, "credential_id": claims.via},
            )

    def revoke(self, token_id: str, revoked_by: str, reason: str = "") -> bool:
        """Store the revocation and apply it in this process at once; False if known."""
        _check_token_id(token_id)
        if len(reason) > 10 * MAX_NAME_CHARS:
            raise BadRequest("reason is too long", details={"max_chars": 10 * MAX_NAME_CHARS})
        with self._db.write() as conn:
            created = token_store.revoke(conn, token_id, revoked_by, reason)
        with self._lock:
            self._ids = self._ids | {token_id}
        if created:
            logger.info("token %s revoked by %s", token_id, revoked_by)
        return created

    def revocation(self, token_id: str) -> Revocation:
        with self._db.read() as conn:
            row = token_store.get_revoked(conn, token_id)
        if row is None:  # pragma: no cover - revoke() stored it in the same request
            raise Unauthenticated(f"token {token_id} is not revoked")
        return _revocation(row)

    def listing(self, page: PageRequest) -> Page[Revocation]:
        """One page of revocations, oldest first."""
        after = (str(page.after[0]), str(page.after[1])) if page.after else None
        with self._db.read() as conn:
            rows = token_store.list_revoked(conn, limit=page.limit + 1, after=after)
        found = paged(rows, page, key=lambda row: (row["revoked_at"], row["token_id"]))
        return Page([_revocation(row) for row in found.items], found.next_cursor)


REVOCATION_CURSOR = (str, str)
"""A revocation list's cursor: (revoked_at, token_id) of the last revocation sent."""


def _revocation(row: Row) -> Revocation:
    return Revocation(
        token_id=row["token_id"],
        revoked_at=row["revoked_at"],
        revoked_by=row["revoked_by"],
        reason=row["reason"],
    )


def _check_token_id(token_id: str) -> None:
    if not token_id or len(token_id) > MAX_TOKEN_ID_CHARS or not token_id.isascii():
        raise BadRequest(
            f"token_id must be 1 to {MAX_TOKEN_ID_CHARS} ASCII characters",
            details={"token_id": token_id[:MAX_TOKEN_ID_CHARS]},
        )


def issue(
    key: Ed25519PrivateKey,
    *,
    subject: str,
    vo: str,
    role: Role,
    ttl_s: int,
    group: str = "",
    max_ttl_s: int | None = None,
    kind: TokenKind = TokenKind.ACCESS,
    via: str = "",
) -> IssuedToken:
    """Sign a new token and return it with its claims (id and expiry included)."""
    for name, value in (("subject", subject), ("vo", vo)):
        if not value.strip() or len(value) > MAX_NAME_CHARS:
            raise BadRequest(f"{name} must be 1 to {MAX_NAME_CHARS} characters")
    if len(group) > MAX_NAME_CHARS:
        raise BadRequest(f"group must be at most {MAX_NAME_CHARS} characters")
    longest_s = MAX_TTL_S if max_ttl_s is None else min(max_ttl_s, MAX_TTL_S)
    if not 1 <= ttl_s <= longest_s:
        raise BadRequest(
            f"ttl_s must be between 1 and {longest_s} seconds",
            details={"ttl_s": ttl_s, "max_ttl_s": longest_s},
        )
    now = datetime.now(timezone.utc)
    if kind is TokenKind.LOGIN and role is Role.PILOT:
        raise BadRequest("login credentials are for people: pilots use pilot tokens")
    token = issue_token(
        key, subject=subject, vo=vo, role=role, ttl_s=ttl_s, group=group, now=now, kind=kind,
        via=via,
    )  # fmt: skip
    return IssuedToken(token=token, claims=verify_token(key.public_key(), token, now=now))


def exchange(
    key: Ed25519PrivateKey, credential: TokenClaims, *, ttl_s: int | None, max_ttl_s: int
) -> IssuedToken:
    """A short-lived access token for the holder of a login credential: same subject, VO,
    role and group, never outliving the credential, and naming it (``via``) so revoking
    the credential refuses the token too."""
    if credential.kind is not TokenKind.LOGIN:
        raise Forbidden(
            "only a login credential can be exchanged for a token; this is an access token",
            details={"kind": credential.kind.value},
        )
    left_s = int((credential.expires_at - datetime.now(timezone.utc)).total_seconds())
    wanted_s = max_ttl_s if ttl_s is None else ttl_s
    if not 1 <= wanted_s <= max_ttl_s:
        raise BadRequest(
            f"ttl_s must be between 1 and {max_ttl_s} seconds",
            details={"ttl_s": wanted_s, "max_ttl_s": max_ttl_s},
        )
    return issue(
        key,
        subject=credential.subject,
        vo=credential.vo,
        role=credential.role,
        group=credential.group,
        ttl_s=max(1, min(wanted_s, left_s)),
        via=credential.token_id,
    )
