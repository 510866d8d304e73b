"""FastAPI dependencies: the shared context, the caller's token, role and protocol checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, Optional

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi import Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import Address, Headers

from coordinator.api.session import SESSION_COOKIE, cookie_token
from coordinator.errors import BadRequest, Forbidden, Unauthenticated
from coordinator.logic.auth import TokenClaims
from coordinator.logic.paging import DEFAULT_LIMIT, MAX_LIMIT
from coordinator.logic.pilots import check_protocol
from coordinator.logic.queue_index import QueueIndex
from coordinator.logic.ratelimit import TokenBuckets
from coordinator.logic.sandboxes import SandboxFiles
from coordinator.logic.tokens import RevocationList
from coordinator.logic.verified_tokens import VerifiedTokens
from coordinator.metrics import Metrics
from coordinator.settings import Settings
from coordinator.storage import Store
from coordinator.store.database import Database
from protocol import PILOT_HEADER, PROTOCOL_HEADER, Role, TokenKind

MAX_DB_INT = 2**63 - 1
"""Largest integer SQLite and PostgreSQL store; a larger id cannot name anything."""
JobIdPath = Annotated[int, Path(ge=0, le=MAX_DB_INT, description="Job id")]
LIMIT_QUERY = Query(
    DEFAULT_LIMIT, description=f"Items per page, at most {MAX_LIMIT}", ge=1, le=MAX_LIMIT
)
"""The ``limit`` of every list (see ``coordinator.logic.paging``)."""
CURSOR_QUERY = Query(None, description="The next_cursor of the previous page", max_length=1024)


@dataclasses.dataclass(frozen=True)
class AppContext:
    """Everything a request handler needs, built once by ``create_app``."""

    settings: Settings
    db: Database
    signing_key: Ed25519PrivateKey
    public_key: Ed25519PublicKey
    sandbox_files: SandboxFiles
    store: Store
    revocations: RevocationList
    rate_limits: TokenBuckets
    verified_tokens: VerifiedTokens
    metrics: Metrics = dataclasses.field(default_factory=Metrics)
    queue_index: QueueIndex = dataclasses.field(default_factory=QueueIndex)
    """The task queues in memory, for matching (a hint: the database claim decides)."""


# The dependencies below are ``async def`` although they never await anything slow:
# FastAPI runs a plain ``def`` dependency in its thread pool, one hand-off per dependency
# and request, and those hand-offs cost more than the checks themselves (heartbeat CPU per
# request, see docs/benchmarks.md "Profiling"). Only the endpoint's own work, which reads
# and writes the database, runs in a thread.


async def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


async def _bearer_claims(request: Request, context: AppContext) -> TokenClaims:
    """The claims of the request's token: its bearer token, or the portal's session cookie
    (``api/session.py``)."""
    header = request.headers.get("authorization", "")
    if not header and SESSION_COOKIE in request.cookies:  # the portal (api/session.py)
        token = cookie_token(request, context.signing_key)
    else:
        token = _bearer_token(header)
    return await token_claims(context, token, request.headers, request.path_params, request.client)


async def bearer_claims(
    context: AppContext,
    headers: Headers,
    path_params: Mapping[str, Any],
    client: Optional[Address],
) -> TokenClaims:
    """The claims of the Authorization header's bearer token (``coordinator.api.hotpath``,
    which leaves requests with cookies to FastAPI)."""
    token = _bearer_token(headers.get("authorization", ""))
    return await token_claims(context, token, headers, path_params, client)


async def token_claims(
    context: AppContext,
    token: str,
    headers: Headers,
    path_params: Mapping[str, Any],
    client: Optional[Address],
) -> TokenClaims:
    """The claims of ``token``: signed by us, not expired, not revoked, within its rate
    limit; the one token check of every route (FastAPI's and the hot path's)."""
    claims = context.verified_tokens.verify(token)
    if context.revocations.stale():
        await run_in_threadpool(context.revocations.reload)  # a database read
    context.revocations.check(claims)
    key = _rate_key(claims, headers, path_params, client)
    context.rate_limits.check(key, f"token {claims.token_id}")
    return claims


async def get_claims(request: Request, context: AppContext = Depends(get_context)) -> TokenClaims:
    """An access token's claims: a login credential is good for nothing but its exchange."""
    return _access_only(await _bearer_claims(request, context))


async def authenticate(
    context: AppContext,
    headers: Headers,
    path_params: Mapping[str, Any],
    client: Optional[Address],
) -> TokenClaims:
    """``get_claims`` for the hot path: the bearer token's, login credentials refused."""
    return _access_only(await bearer_claims(context, headers, path_params, client))


def _access_only(claims: TokenClaims) -> TokenClaims:
    if claims.kind is TokenKind.LOGIN:
        raise Unauthenticated(
            "this is a login credential, not an access token: exchange it with "
            "'gridpilot login --credential-file FILE' and use the token that gives",
            details={"kind": claims.kind.value},
        )
    return claims


async def get_login_claims(
    request: Request, context: AppContext = Depends(get_context)
) -> TokenClaims:
    """Any valid token's claims, login credentials included: the exchange endpoint's
    logic refuses what is not a login credential."""
    return await _bearer_claims(request, context)


def _bearer_token(header: str) -> str:
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthenticated("missing Authorization header; send 'Bearer <token>'")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token


def _rate_key(
    claims: TokenClaims,
    headers: Headers,
    path_params: Mapping[str, Any],
    client: Optional[Address],
) -> str:
    """Users and admins are counted per token; pilots per pilot, since a pilot factory
    usually gives one token to all the pilots it starts."""
    if claims.role is not Role.PILOT:
        return claims.token_id
    pilot_id = path_params.get("pilot_id") or headers.get(PILOT_HEADER)
    if not pilot_id:
        pilot_id = client.host if client else ""
    return f"{claims.token_id}/{pilot_id}"


async def require_user(claims: TokenClaims = Depends(get_claims)) -> TokenClaims:
    """Users and admins; pilots are refused."""
    if claims.role not in (Role.USER, Role.ADMIN):
        raise Forbidden(
            f"this endpoint is for users; the token's role is {claims.role.value}",
            details={"role": claims.role.value},
        )
    return claims


async def require_admin(claims: TokenClaims = Depends(get_claims)) -> TokenClaims:
    """Admin tokens only."""
    if claims.role is not Role.ADMIN:
        raise Forbidden(
            f"this endpoint is for admins; the token's role is {claims.role.value}",
            details={"role": claims.role.value},
        )
    return claims


async def require_pilot(
    request: Request,
    claims: TokenClaims = Depends(get_claims),
    context: AppContext = Depends(get_context),
) -> TokenClaims:
    """Pilot tokens only, from a pilot speaking a protocol this coordinator still serves."""
    check_pilot(claims, request.headers, context.settings)
    return claims


def check_pilot(claims: TokenClaims, headers: Headers, settings: Settings) -> None:
    """``Forbidden`` unless a pilot's token; ``BadRequest`` or ``PilotTooOld`` unless the
    protocol header names a version this coordinator serves."""
    if claims.role is not Role.PILOT:
        raise Forbidden(
            f"this endpoint is for pilots; the token's role is {claims.role.value}",
            details={"role": claims.role.value},
        )
    announced = headers.get(PROTOCOL_HEADER)
    if announced is None:
        raise BadRequest(f"pilots must send the {PROTOCOL_HEADER} header")
    try:
        version = int(announced)
    except ValueError as exc:
        raise BadRequest(f"{PROTOCOL_HEADER} must be an integer, got {announced!r}") from exc
    check_protocol(version, settings)


async def pilot_id_header(request: Request, _claims: TokenClaims = Depends(require_pilot)) -> str:
    # Depending on require_pilot makes the token count before the header: a caller without
    # a valid pilot token gets 401/403, never a 400 about a header it should not send.
    return pilot_id_of(request.headers)


def pilot_id_of(headers: Headers) -> str:
    """The pilot id a per-job call names in its header; ``BadRequest`` if none."""
    pilot_id = headers.get(PILOT_HEADER, "").strip()
    if not pilot_id:
        raise BadRequest(f"pilots must name themselves in the {PILOT_HEADER} header")
    return pilot_id
