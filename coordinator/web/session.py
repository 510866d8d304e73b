"""Who is looking at a page: the session cookie's token, checked like a bearer token."""

from __future__ import annotations

import secrets
from typing import Optional
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from coordinator.api.deps import AppContext
from coordinator.api.session import CSRF_HEADER, SESSION_COOKIE, check_csrf
from coordinator.errors import CoordinatorError, Unauthenticated
from coordinator.logic.auth import TokenClaims
from protocol import Role

LOGIN_PATH = "/web/login"
LOGIN_CSRF_COOKIE = "gridpilot_login_csrf"


async def verified_claims(context: AppContext, token: str) -> TokenClaims:
    """The token's claims if it is valid, unrevoked and a user's or admin's."""
    claims = context.verified_tokens.verify(token.strip())
    if context.revocations.stale():
        await run_in_threadpool(context.revocations.reload)
    context.revocations.check(claims)
    if claims.role not in (Role.USER, Role.ADMIN):
        raise Unauthenticated(
            f"this is a {claims.role.value} token; the portal takes user and admin tokens"
        )
    return claims


async def page_claims(request: Request, context: AppContext) -> Optional[TokenClaims]:
    """The session's claims, or None when the visitor must log in (again)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return await verified_claims(context, token)
    except CoordinatorError:
        return None


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"{LOGIN_PATH}?next={quote(target)}", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def check_form_csrf(request: Request, context: AppContext, sent: str) -> None:
    token = request.cookies.get(SESSION_COOKIE, "")
    check_csrf(context.signing_key, token, sent or request.headers.get(CSRF_HEADER, ""))


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def is_local_path(target: str) -> bool:
    """Only paths of this site are followed after login (no open redirect)."""
    return target.startswith("/") and not target.startswith("//") and "\\" not in target
