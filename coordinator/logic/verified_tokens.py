"""Tokens whose signature this process has already checked.

Checking a token's Ed25519 signature costs about 0.17 ms of CPU, a twentieth of a whole
heartbeat request, and a pilot sends the same token with every request for days. The claims
of a token that passed ``verify_token`` are kept, keyed by the token's exact text: the
same text always decodes to the same signed claims, so only the expiry (checked again at
every use) can change the answer. Revocation is not cached here: it is checked on every
request, after this (``RevocationList``). Tokens that fail are never kept.
"""

from __future__ import annotations

import threading
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coordinator.logic.auth import TokenClaims, check_not_expired, verify_token

MAX_TOKENS = 10_000
"""Distinct tokens kept; past it the cache starts again empty (one signature check each)."""


class VerifiedTokens:
    def __init__(self, public_key: Ed25519PublicKey, max_tokens: int = MAX_TOKENS) -> None:
        self._public_key = public_key
        self._max_tokens = max_tokens
        self._claims: dict[str, TokenClaims] = {}
        self._lock = threading.Lock()

    def verify(self, token: str, *, now: datetime | None = None) -> TokenClaims:
        """``verify_token``'s answer for ``token``: its claims, or ``Unauthenticated``."""
        claims = self._claims.get(token)
        if claims is None:
            claims = verify_token(self._public_key, token, now=now)
            with self._lock:
                if len(self._claims) >= self._max_tokens:
                    self._claims.clear()
                self._claims[token] = claims
            return claims
        check_not_expired(claims, now)
        return claims
