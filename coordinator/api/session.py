"""Browser sessions: the token a user pasted, kept in an httpOnly cookie, and CSRF tokens.

The portal's pages and the scripts share one API; a browser authenticates to it with the
session cookie instead of an ``Authorization`` header. The cookie holds the token itself
(``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS, expiring with the token), so any
coordinator replica with the signing key serves the session and nothing is kept server-side.

Every state-changing request authenticated by the cookie must also carry the CSRF token
(header ``X-CSRF-Token``, or the form field ``csrf_token`` on the portal's forms): an
HMAC of the session token under a key derived from the signing key. A page of another
site can make the browser send the cookie (SameSite already stops most of that), but it
cannot read the CSRF token from our pages.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Request

from coordinator.errors import Forbidden

SESSION_COOKIE = "gridpilot_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(signing_key: Ed25519PrivateKey, session_token: str) -> str:
    raw = signing_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    key = hashlib.sha256(b"gridpilot csrf v1\0" + raw).digest()
    return hmac.new(key, session_token.encode(), hashlib.sha256).hexdigest()


def check_csrf(signing_key: Ed25519PrivateKey, session_token: str, sent: str) -> None:
    if not sent or not hmac.compare_digest(sent, csrf_token(signing_key, session_token)):
        raise Forbidden(
            "missing or wrong CSRF token: reload the page and try again",
            details={"csrf": "invalid"},
        )


def cookie_token(request: Request, signing_key: Ed25519PrivateKey) -> str:
    """The session token of a cookie-authenticated request; unsafe methods must carry
    the CSRF header (the portal's form routes check their form field themselves)."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if request.method not in SAFE_METHODS:
        check_csrf(signing_key, token, request.headers.get(CSRF_HEADER, ""))
    return token
