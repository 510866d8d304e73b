"""Signed bearer tokens: Ed25519 over a small JSON claim set.

A token is ``base64url(claims JSON) + "." + base64url(signature)`` without padding; the
signature covers the first part exactly as sent. Claims: ``sub``, ``vo``, ``role``, ``grp``,
``iat``, ``exp`` (Unix seconds) and ``jti``; a login credential adds ``knd: "login"``, and an
access token obtained with one names it in ``via`` (its ``jti``), so revoking the credential
also refuses every token it gave. Tokens without ``knd`` are access tokens.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import os
import re
import secrets
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from coordinator.errors import CoordinatorError, Unauthenticated
from protocol import Role, TokenKind

logger = logging.getLogger(__name__)

SIGNING_KEY_FILE = "signing-key.pem"
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class SigningKeyError(CoordinatorError):
    """The signing key file exists but is not a usable Ed25519 private key."""

    code = "signing_key"


@dataclasses.dataclass(frozen=True)
class TokenClaims:
    subject: str
    vo: str
    role: Role
    group: str
    expires_at: datetime
    token_id: str
    kind: TokenKind = TokenKind.ACCESS
    via: str = ""
    """The id of the login credential this access token was exchanged from, if any."""


def load_or_create_signing_key(data_dir: Path, key_file: Path | None = None) -> Ed25519PrivateKey:
    """Read ``data_dir/signing-key.pem``, creating it (mode 0600, atomically) if missing.

    With ``key_file`` (replicas sharing one key), read that file and never create it."""
    path = Path(data_dir) / SIGNING_KEY_FILE if key_file is None else Path(key_file)
    if key_file is not None and not path.is_file():
        raise SigningKeyError(
            f"no signing key at {path}: give every coordinator replica a copy of the same key "
            f"(e.g. the {SIGNING_KEY_FILE} of the first one)"
        )
    if not path.exists():
        _create_key_file(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise SigningKeyError(f"{path} is not a readable PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} does not hold an Ed25519 private key")
    return key


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, tmp_name = tempfile.mkstemp(prefix=".signing-key-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
        os.fsync(fd)
        os.close(fd)
        # link() fails if another process created the key first; that key then wins.
        os.link(tmp_name, path)
        logger.info("created a new token signing key in %s", path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp_name)


def issue_token(
    key: Ed25519PrivateKey,
    *,
    subject: str,
    vo: str,
    role: Role,
    ttl_s: int,
    now: datetime | None = None,
    group: str = "",
    kind: TokenKind = TokenKind.ACCESS,
    via: str = "",
) -> str:
    issued = now if now is not None else datetime.now(timezone.utc)
    claims: dict[str, Any] = {
        "sub": subject,
        "vo": vo,
        "role": Role(role).value,
        "grp": group,
        "iat": int(issued.timestamp()),
        "exp": int((issued + timedelta(seconds=ttl_s)).timestamp()),
        "jti": secrets.token_hex(8),
    }
    if kind is not TokenKind.ACCESS:
        claims["knd"] = TokenKind(kind).value
    if via:
        claims["via"] = via
    body = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signature = _b64encode(key.sign(body.encode("ascii")))
    return f"{body}.{signature}"


def verify_token(
    public_key: Ed25519PublicKey, token: str, *, now: datetime | None = None
) -> TokenClaims:
    """Check signature and expiry; raise ``Unauthenticated`` saying which one failed."""
    body, sep, signature_text = token.strip().partition(".")
    if not sep or not body or not signature_text:
        raise Unauthenticated("malformed token: expected two dot-separated parts")
    try:
        signature = _b64decode(signature_text)
        public_key.verify(signature, body.encode("ascii"))
    except ValueError as exc:
        raise Unauthenticated("malformed token: signature is not base64url") from exc
    except InvalidSignature as exc:
        raise Unauthenticated("bad token signature: not issued by this coordinator") from exc
    claims = _decode_claims(body)
    check_not_expired(claims, now)
    return claims


def check_not_expired(claims: TokenClaims, now: datetime | None = None) -> None:
    moment = now if now is not None else datetime.now(timezone.utc)
    if moment >= claims.expires_at:
        raise Unauthenticated(
            f"token expired at {claims.expires_at.isoformat()}",
            details={"expired_at": claims.expires_at.isoformat()},
        )


def _decode_claims(body: str) -> TokenClaims:
    try:
        raw: Any = json.loads(_b64decode(body))
        return TokenClaims(
            subject=_text(raw["sub"]),
            vo=_text(raw["vo"]),
            role=Role(raw["role"]),
            group=_text(raw.get("grp", "")),
            expires_at=datetime.fromtimestamp(int(raw["exp"]), tz=timezone.utc),
            token_id=_text(raw.get("jti", "")),
            kind=TokenKind(raw.get("knd", TokenKind.ACCESS.value)),
            via=_text(raw.get("via", "")),
        )
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise Unauthenticated(f"malformed token claims: {exc}") from exc


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string claim, got {type(value).__name__}")
    return value


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # Strict: the lenient decoder would skip stray characters and accept altered tokens.
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc
    # The last character carries unused bits; only the canonical spelling is accepted.
    if _b64encode(data) != text:
        raise ValueError("not canonical base64url")
    return data
