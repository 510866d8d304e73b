"""Where a user command finds the coordinator and its token: built once per invocation.

The options (``--url``, ``--token``, ``--token-file``, ``--ca-bundle``, ``--timeout-s``,
``--connect-timeout-s``) are accepted before and after the sub-command; what was typed
after it wins over what was typed before it. For the token, what the user typed on the
command line wins over the environment, which wins over the ``gridpilot login`` session:

1. ``--token`` or ``--token-file`` on the command line (both at once is a usage error);
2. ``GRIDPILOT_TOKEN``, else ``GRIDPILOT_TOKEN_FILE`` (the pilot's order; with both set a
   warning says which one is used);
3. the session ``gridpilot login`` saved, refreshed with its login credential when it is
   about to expire.

The URL comes from ``--url``, else ``GRIDPILOT_URL``, else the login session.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from client.errors import InputError, NotAuthorised, UsageError
from client.sessions import LoginSession, SessionStore
from client.textfiles import read_text
from protocol import url_problem

if TYPE_CHECKING:
    from client.api import UserClient

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 2.0
"""A user command fails fast: a coordinator that does not take the connection within
this is reported at once (pilots, in contrast, retry for minutes)."""
URL_ENV = "GRIDPILOT_URL"
TOKEN_ENV = "GRIDPILOT_TOKEN"
TOKEN_FILE_ENV = "GRIDPILOT_TOKEN_FILE"
CA_BUNDLE_ENV = "GRIDPILOT_CA_BUNDLE"
CONNECTION_OPTIONS = ("url", "token", "token_file", "ca_bundle", "timeout_s", "connect_timeout_s")


@dataclasses.dataclass
class ConnectionOptions:
    """What the command line and the environment said; filled in while the command line is
    parsed (the root callback, then the sub-command's copies of the options)."""

    typed: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Options typed on the command line; a later one (after the sub-command) replaces."""
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    verbose: bool = False

    def record(self, name: str, value: Any) -> None:
        if value is not None:
            self.typed[name] = value


@dataclasses.dataclass(frozen=True)
class Connection:
    """The coordinator a command talks to and with which token."""

    url: str
    token: str
    token_source: str
    """Where the token came from, in words (``--token-file x``, ``GRIDPILOT_TOKEN``, ...)."""
    verify: Any
    timeout_s: float
    connect_timeout_s: float


def checked_url(url: str, where: str) -> str:
    problem = url_problem(url)
    if problem:
        raise UsageError(
            f"{where} {url!r} is not a coordinator URL: {problem} "
            "(for example http://127.0.0.1:8080)"
        )
    return url.strip().rstrip("/")


def read_token_file(path: Path, where: str) -> str:
    try:
        token = read_text(path.expanduser(), "token file").strip()
    except InputError as exc:
        raise InputError(f"{where} {exc.message}", details=exc.details) from exc
    if not token:
        raise InputError(f"{where} {path}: the file is empty")
    return token


def _typed_token(options: ConnectionOptions) -> Optional[tuple[str, str]]:
    token, token_file = options.typed.get("token"), options.typed.get("token_file")
    if token and token_file:
        raise UsageError("give --token or --token-file, not both")
    if token:
        return str(token), "--token"
    if token_file:
        return read_token_file(Path(token_file), "--token-file"), f"--token-file {token_file}"
    return None


def _env_token(options: ConnectionOptions) -> Optional[tuple[str, str]]:
    token, token_file = options.env.get(TOKEN_ENV), options.env.get(TOKEN_FILE_ENV)
    if token and token_file:
        logger.warning("both %s and %s are set: using %s", TOKEN_ENV, TOKEN_FILE_ENV, TOKEN_ENV)
    if token:
        return token.strip(), TOKEN_ENV
    if token_file:
        return read_token_file(Path(token_file), TOKEN_FILE_ENV), f"{TOKEN_FILE_ENV} {token_file}"
    return None


def _verify(options: ConnectionOptions) -> Any:
    """What ``requests`` verifies an https coordinator with: the CA bundle, else the system's."""
    typed = options.typed.get("ca_bundle")
    bundle = typed if typed is not None else options.env.get(CA_BUNDLE_ENV)
    if not bundle:
        return True
    where = "--ca-bundle" if typed is not None else CA_BUNDLE_ENV
    path = Path(bundle).expanduser()
    if not path.is_file():
        raise InputError(f"{where} {bundle}: no such file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{where} {bundle}: permission denied")
    return str(path)


def _positive(options: ConnectionOptions, name: str, default: float) -> float:
    value = float(options.typed.get(name, default))
    if not value > 0:
        raise UsageError(f"--{name.replace('_', '-')} must be more than 0, not {value:g}")
    return value


class ConnectionFactory:
    """Builds the one client a command uses, from the options and the login session."""

    def __init__(self, options: ConnectionOptions, sessions: SessionStore) -> None:
        self.options = options
        self.sessions = sessions
        self._client: Optional[UserClient] = None

    def url(self, session: Optional[LoginSession] = None) -> str:
        typed = self.options.typed.get("url")
        if typed:
            return checked_url(str(typed), "--url")
        from_env = self.options.env.get(URL_ENV)
        if from_env:
            return checked_url(from_env, URL_ENV)
        if session is not None:
            return session.url
        raise UsageError(
            f"no coordinator URL: give --url, set {URL_ENV}, or log in ('gridpilot login')"
        )

    def connection(self) -> Connection:
        found = _typed_token(self.options) or _env_token(self.options)
        session = self.sessions.load()
        url = self.url(session)
        if found is None and session is not None:
            if session.url != url:
                raise NotAuthorised(
                    f"no token for {url}: the login session is for {session.url} "
                    "(log in again, or give --token-file)"
                )
            session = self.sessions.fresh(session, self.connect_with)
            found = (session.token, f"the login session ({self.sessions.path})")
        if found is None:
            raise NotAuthorised(
                "no token: log in ('gridpilot login'), give --token-file, or set "
                f"{TOKEN_ENV} or {TOKEN_FILE_ENV}"
            )
        token, source = found
        return self.connect_with(url, token, source)

    def connect_with(self, url: str, token: str, source: str) -> Connection:
        """A connection to ``url`` with ``token``, under this invocation's TLS and timeouts."""
        return Connection(
            url=url,
            token=token,
            token_source=source,
            verify=_verify(self.options),
            timeout_s=_positive(self.options, "timeout_s", DEFAULT_TIMEOUT_S),
            connect_timeout_s=_positive(
                self.options, "connect_timeout_s", DEFAULT_CONNECT_TIMEOUT_S
            ),
        )

    def client(self) -> UserClient:
        """The command's client, made on first use (one per invocation)."""
        if self._client is None:
            from client.api import UserClient

            self._client = UserClient(self.connection())
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
