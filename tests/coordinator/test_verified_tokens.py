"""The verified-token cache answers exactly as ``verify_token`` would, expiry included."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.errors import Unauthenticated
from coordinator.logic.auth import issue_token, verify_token
from coordinator.logic.verified_tokens import VerifiedTokens
from protocol import Role

KEY = Ed25519PrivateKey.generate()
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


def _token(key: Ed25519PrivateKey = KEY, ttl_s: int = 600) -> str:
    return issue_token(key, subject="pilot-1", vo="vo1", role=Role.PILOT, ttl_s=ttl_s, now=NOW)


def test_a_cached_token_gives_the_same_claims_as_verifying_it() -> None:
    cache = VerifiedTokens(KEY.public_key())
    token = _token()
    first = cache.verify(token, now=NOW)
    assert first == verify_token(KEY.public_key(), token, now=NOW)
    assert cache.verify(token, now=NOW + timedelta(seconds=10)) == first


def test_a_cached_token_still_expires() -> None:
    cache = VerifiedTokens(KEY.public_key())
    token = _token(ttl_s=60)
    cache.verify(token, now=NOW)
    with pytest.raises(Unauthenticated, match="expired"):
        cache.verify(token, now=NOW + timedelta(seconds=60))


def test_a_forged_token_is_refused_every_time() -> None:
    cache = VerifiedTokens(KEY.public_key())
    forged = _token(key=Ed25519PrivateKey.generate())
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="signature"):
            cache.verify(forged, now=NOW)
    # Same claims, another signature: the genuine token's entry does not vouch for it.
    genuine = _token()
    cache.verify(genuine, now=NOW)
    body, _, _ = genuine.partition(".")
    with pytest.raises(Unauthenticated):
        cache.verify(body + "." + forged.partition(".")[2], now=NOW)


def test_a_full_cache_starts_again_and_keeps_answering() -> None:
    cache = VerifiedTokens(KEY.public_key(), max_tokens=2)
    tokens = [_token() for _ in range(5)]  # each has its own id, so its own text
    for token in tokens * 2:
        assert cache.verify(token, now=NOW).subject == "pilot-1"
