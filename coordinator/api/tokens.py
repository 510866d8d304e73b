"""Admin endpoints on tokens: issue one, revoke one, list the revoked ones."""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

from fastapi import APIRouter, Depends

from coordinator.api.deps import CURSOR_QUERY, LIMIT_QUERY, AppContext, get_context, require_admin
from coordinator.logic import tokens
from coordinator.logic.auth import TokenClaims
from coordinator.logic.bounds import check_message
from coordinator.logic.paging import page_request
from protocol import API_PREFIX, Role

logger = logging.getLogger(__name__)
router = APIRouter(prefix=API_PREFIX, tags=["tokens"])


@dataclasses.dataclass(frozen=True)
class TokenRequest:
    subject: str
    vo: str
    role: Role = Role.USER
    group: str = ""
    ttl_s: Optional[int] = None
    """Lifetime in seconds; default and maximum: the coordinator's ``token_ttl_s``."""


@dataclasses.dataclass(frozen=True)
class IssuedTokenReply:
    token: str
    token_id: str
    subject: str
    vo: str
    role: Role
    group: str
    expires_at: str


@dataclasses.dataclass(frozen=True)
class RevokeRequest:
    token_id: str
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class RevocationInfo:
    token_id: str
    revoked_at: str
    revoked_by: str
    reason: str


@dataclasses.dataclass(frozen=True)
class RevokedTokens:
    revoked: list[RevocationInfo]
    next_cursor: Optional[str] = None
    """Pass it as ``cursor`` for the next page; null on the last page."""


@router.post("/tokens", status_code=201, summary="Issue a token (admins)")
def issue_token(
    body: TokenRequest,
    claims: TokenClaims = Depends(require_admin),
    context: AppContext = Depends(get_context),
) -> IssuedTokenReply:
    """Sign a token for any subject, VO and role, e.g. for a pilot factory."""
    check_message(body)
    max_ttl_s = context.settings.token_ttl_s
    issued = tokens.issue(
        context.signing_key,
        subject=body.subject,
        vo=body.vo,
        role=body.role,
        group=body.group,
        ttl_s=body.ttl_s if body.ttl_s is not None else max_ttl_s,
        max_ttl_s=max_ttl_s,
    )
    logger.info(
        "%s issued token %s for %s (%s, %s)",
        claims.subject,
        issued.claims.token_id,
        body.subject,
        body.vo,
        body.role.value,
    )
    new = issued.claims
    return IssuedTokenReply(
        token=issued.token,
        token_id=new.token_id,
        subject=new.subject,
        vo=new.vo,
        role=new.role,
        group=new.group,
        expires_at=new.expires_at.isoformat(),
    )


@router.post("/tokens/revoke", summary="Revoke a token by its id (admins)")
def revoke_token(
    body: RevokeRequest,
    claims: TokenClaims = Depends(require_admin),
    context: AppContext = Depends(get_context),
) -> RevocationInfo:
    """Refuse the token with this id from now on: its next request gets 401. Revoking an
    id twice keeps the first record."""
    check_message(body)
    context.revocations.revoke(body.token_id, claims.subject, body.reason)
    return RevocationInfo(**dataclasses.asdict(context.revocations.revocation(body.token_id)))


@router.get("/tokens/revoked", summary="List revoked token ids (admins)")
def list_revoked(
    limit: int = LIMIT_QUERY,
    cursor: Optional[str] = CURSOR_QUERY,
    _claims: TokenClaims = Depends(require_admin),
    context: AppContext = Depends(get_context),
) -> RevokedTokens:
    """Revoked token ids, oldest first, one page at a time."""
    page = page_request(limit, cursor, tokens.REVOCATION_CURSOR)
    found = context.revocations.listing(page)
    revoked = [RevocationInfo(**dataclasses.asdict(item)) for item in found.items]
    return RevokedTokens(revoked=revoked, next_cursor=found.next_cursor)
