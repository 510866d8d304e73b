"""Ed25519 tokens: issue, verify, expiry, tampering, and the signing key file."""

from __future__ import annotations

import base64
import json
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from coordinator.errors import Unauthenticated
from coordinator.logic.auth import (
    SIGNING_KEY_FILE,
    SigningKeyError,
    issue_token,
    load_or_create_signing_key,
    verify_token,
)
from protocol import Role

KEY = Ed25519PrivateKey.generate()
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


def _token(**overrides: object) -> str:
    args: dict[str, object] = {
        "subject": "alice",
        "vo": "vo1",
        "role": Role.USER,
        "ttl_s": 600,
        "now": NOW,
        "group": "vo1_user",
    }
    args.update(overrides)
    return issue_token(KEY, **args)  # type: ignore[arg-type]


def test_issued_token_verifies_to_its_claims() -> None:
    claims = verify_token(KEY.public_key(), _token(role=Role.ADMIN), now=NOW)
    assert (claims.subject, claims.vo, claims.role, claims.group) == (
        "alice",
        "vo1",
        Role.ADMIN,
        "vo1_user",
    )
    assert claims.expires_at == NOW + timedelta(seconds=600)
    assert claims.token_id


def test_each_token_has_its_own_id() -> None:
    first = verify_token(KEY.public_key(), _token(), now=NOW)
    second = verify_token(KEY.public_key(), _token(), now=NOW)
    assert first.token_id != second.token_id


def test_token_is_valid_until_just_before_expiry() -> None:
    token = _token(ttl_s=60)
    verify_token(KEY.public_key(), token, now=NOW + timedelta(seconds=59))
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(KEY.public_key(), token, now=NOW + timedelta(seconds=60))


def test_token_from_another_key_is_refused() -> None:
    other = Ed25519PrivateKey.generate()
    token = issue_token(other, subject="alice", vo="vo1", role=Role.USER, ttl_s=60, now=NOW)
    with pytest.raises(Unauthenticated, match="signature"):
        verify_token(KEY.public_key(), token, now=NOW)


def test_changed_claims_break_the_signature() -> None:
    body, signature = _token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(Unauthenticated, match="signature"):
        verify_token(KEY.public_key(), f"{forged}.{signature}", now=NOW)


@given(position=st.integers(min_value=0), replacement=st.characters())
def test_any_single_character_change_is_refused(position: int, replacement: str) -> None:
    token = _token()
    position %= len(token)
    if token[position] == replacement:
        return
    altered = token[:position] + replacement + token[position + 1 :]
    with pytest.raises(Unauthenticated):
        verify_token(KEY.public_key(), altered, now=NOW)


@given(text=st.text(max_size=200))
def test_garbage_is_refused_as_unauthenticated(text: str) -> None:
    with pytest.raises(Unauthenticated):
        verify_token(KEY.public_key(), text, now=NOW)


@pytest.mark.parametrize("token", ["", ".", "abc", "abc.", ".abc", "a.b.c"])
def test_malformed_tokens_say_so(token: str) -> None:
    with pytest.raises(Unauthenticated, match="malformed"):
        verify_token(KEY.public_key(), token, now=NOW)


def test_signing_key_is_created_private_and_reused(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path)
    path = tmp_path / SIGNING_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_signing_key(tmp_path)
    token = issue_token(key, subject="a", vo="v", role=Role.PILOT, ttl_s=60)
    assert verify_token(again.public_key(), token).role is Role.PILOT
    assert [p.name for p in tmp_path.iterdir()] == [SIGNING_KEY_FILE]


def test_unreadable_signing_key_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / SIGNING_KEY_FILE).write_text("not a key")
    with pytest.raises(SigningKeyError, match=SIGNING_KEY_FILE):
        load_or_create_signing_key(tmp_path)


def test_signature_spelt_differently_is_refused() -> None:
    # 64 signature bytes take 86 base64 characters; the last one has 4 unused bits, so
    # several spellings decode to the same bytes. Only the one we issued is accepted.
    token = _token()
    body, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    sibling = alphabet[last ^ 1]
    with pytest.raises(Unauthenticated):
        verify_token(KEY.public_key(), f"{body}.{signature[:-1]}{sibling}", now=NOW)
