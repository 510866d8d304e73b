"""The ``gridpilot login`` session: a short-lived access token kept for the next commands.

An admin gives a user a long-lived login credential (``gridpilot token create --login``);
``gridpilot login`` exchanges it at the coordinator for an access token of a few hours
and keeps that token, its expiry and where the credential file is in a session file
(mode 0600) under ``$XDG_CACHE_HOME/gridpilot`` (``~/.cache/gridpilot``), or at
``GRIDPILOT_SESSION_FILE``. A command finding the token about to expire exchanges the
credential again, as ``dirac-proxy-init`` users renew a proxy, without being asked.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from client.errors import InputError, NotAuthorised

if TYPE_CHECKING:
    from client.connection import Connection

logger = logging.getLogger(__name__)

SESSION_FILE_ENV = "GRIDPILOT_SESSION_FILE"
CREDENTIAL_FILE_ENV = "GRIDPILOT_CREDENTIAL_FILE"
REFRESH_BEFORE_S = 600.0
"""A token with less than this left is renewed before use."""


@dataclasses.dataclass(frozen=True)
class LoginSession:
    url: str
    token: str
    token_id: str
    expires_at: str
    credential_file: str
    subject: str = ""
    vo: str = ""
    role: str = ""

    def seconds_left(self, now: Optional[datetime] = None) -> float:
        return seconds_until(self.expires_at, now)


def seconds_until(iso_time: str, now: Optional[datetime] = None) -> float:
    """Seconds from now to an ISO 8601 time (0 for a time that cannot be read)."""
    moment = now or datetime.now(timezone.utc)
    try:
        return (datetime.fromisoformat(iso_time) - moment).total_seconds()
    except (ValueError, TypeError):
        return 0.0


def default_session_file(env: Mapping[str, str]) -> Path:
    if env.get(SESSION_FILE_ENV):
        return Path(env[SESSION_FILE_ENV]).expanduser()
    cache = env.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(cache) / "gridpilot" / "session.json"


def default_credential_file(env: Mapping[str, str]) -> Path:
    if env.get(CREDENTIAL_FILE_ENV):
        return Path(env[CREDENTIAL_FILE_ENV]).expanduser()
    config = env.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(config) / "gridpilot" / "credential"


Connect = Callable[[str, str, str], "Connection"]


class SessionStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Optional[LoginSession]:
        """The saved session, or None when there is none (or it cannot be read)."""
        try:
            data: Any = json.loads(self.path.read_text(encoding="utf-8"))
            known = {field.name for field in dataclasses.fields(LoginSession)}
            return LoginSession(**{k: str(v) for k, v in data.items() if k in known})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            logger.warning("ignoring the login session %s: %s", self.path, exc)
            return None

    def save(self, session: LoginSession) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".session-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(dataclasses.asdict(session), out, indent=2)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise InputError(
                f"cannot save the login session in {self.path}: {exc.strerror or exc}"
            ) from exc

    def remove(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise InputError(f"cannot remove {self.path}: {exc.strerror or exc}") from exc
        return True

    def fresh(self, session: LoginSession, connect: Connect) -> LoginSession:
        """The session with a token good for a while: renewed with its credential when it
        expires within ``REFRESH_BEFORE_S``."""
        left_s = session.seconds_left()
        if left_s > REFRESH_BEFORE_S:
            return session
        credential_file = Path(session.credential_file)
        if not credential_file.is_file():
            if left_s > 0:
                return session
            raise NotAuthorised(
                f"the login session expired at {session.expires_at} and its credential "
                f"{credential_file} is gone: log in again ('gridpilot login')"
            )
        logger.info("renewing the login token (%.0f s left)", left_s)
        return self.login(session.url, credential_file, connect)

    def login(
        self, url: str, credential_file: Path, connect: Connect, ttl_s: Optional[int] = None
    ) -> LoginSession:
        """Exchange the credential for an access token at ``url`` and save the session."""
        from client.api import UserClient
        from client.connection import read_token_file

        credential = read_token_file(credential_file, "credential file")
        client = UserClient(connect(url, credential, f"credential {credential_file}"))
        try:
            issued = client.exchange_credential(ttl_s)
        finally:
            client.close()
        session = LoginSession(
            url=url,
            token=issued.token,
            token_id=issued.token_id,
            expires_at=issued.expires_at,
            credential_file=str(credential_file.expanduser().resolve()),
            subject=issued.subject,
            vo=issued.vo,
            role=issued.role.value,
        )
        self.save(session)
        return session


def hours_left(seconds: float) -> str:
    """``11:59:40`` style, as ``dirac-proxy-info`` shows the time left."""
    whole = max(0, int(seconds))
    return str(timedelta(seconds=whole))
