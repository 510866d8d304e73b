"""Token endpoints: admins issue and revoke tokens; a login credential is exchanged for a
short-lived access token; any caller asks who its token says it is."""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

from fastapi import APIRouter, Depends

from coordinator.api.deps import (
    CURSOR_QUERY,
    LIMIT_QUERY,
    AppContext,
    get_claims,
    get_context,
    get_login_claims,
    require_admin,
)
from coordinator.logic import tokens
from coordinator.logic.auth import TokenClaims
from coordinator.logic.bounds import check_message
from coordinator.logic.paging import page_request
from protocol import (
    API_PREFIX,
    IssuedTokenReply,
    RevocationInfo,
    RevokedTokens,
    RevokeRequest,
    TokenExchangeRequest,
    TokenRequest,
    WhoAmI,
)

logger = logging.getLogger(__name__)
router = APIRouter(prefix=API_PREFIX, tags=["tokens"])


def _reply(issued: tokens.IssuedToken) -> IssuedTokenReply:
    new = issued.claims
    return IssuedTokenReply(
        token=issued.token,
        token_id=new.token_id,
        subject=new.subject,
        vo=new.vo,
        role=new.role,
        group=new.group,
        expires_at=new.expires_at.isoformat(),
        kind=new.kind,
    )


@router.post("/tokens", status_code=201, summary="Issue a token (admins)")
def issue_token(
    body: TokenRequest,
    claims: TokenClaims = Depends(require_admin),
    context: AppContext = Depends(get_context),
) -> IssuedTokenReply:
    """Sign a token for any subject, VO and role, e.g. for a pilot factory; ``kind: login``
    makes a login credential for a user (``gridpilot login`` exchanges it)."""
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
        kind=body.kind,
    )
    logger.info(
        "%s issued %s token %s for %s (%s, %s)",
        claims.subject,
        body.kind.value,
        issued.claims.token_id,
        body.subject,
        body.vo,
        body.role.value,
    )
    return _reply(issued)


@router.post("/tokens/exchange", summary="Exchange a login credential for an access token")
def exchange_token(
    body: TokenExchangeRequest,
    credential: TokenClaims = Depends(get_login_claims),
    context: AppContext = Depends(get_context),
) -> IssuedTokenReply:
    """Sent with a login credential as the bearer token (``gridpilot login``): a new access
    token for the same subject, VO, role and group, valid ``login_token_ttl_s`` at most."""
    check_message(body)
    issued = tokens.exchange(
        context.signing_key,
        credential,
        ttl_s=body.ttl_s,
        max_ttl_s=context.settings.login_token_ttl_s,
    )
    logger.info(
        "login credential %s of %s (%s) gave token %s",
        credential.token_id,
        credential.subject,
        credential.vo,
        issued.claims.token_id,
    )
    return _reply(issued)


@router.get("/tokens/whoami", summary="Who the caller's token says it is")
def whoami(claims: TokenClaims = Depends(get_claims)) -> WhoAmI:
    return WhoAmI(
        subject=claims.subject,
        vo=claims.vo,
        role=claims.role,
        group=claims.group,
        token_id=claims.token_id,
        expires_at=claims.expires_at.isoformat(),
        kind=claims.kind,
    )


@router.post("/tokens/revoke", summary="Revoke a token by its id (admins)")
def revoke_token(
    body: RevokeRequest,
    claims: TokenClaims = Depends(require_admin),
    context: AppContext = Depends(get_context),
) -> RevocationInfo:
    """Refuse the token with this id from now on: its next request gets 401. Revoking a
    login credential also refuses the tokens it gave. Revoking an id twice keeps the first
    record."""
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
