"""The server's commands: ``gridpilot serve``, ``gridpilot token create`` (signed with the
key in the data dir, so run next to it), ``gridpilot certs dev`` and ``gridpilot db``
(``db_cli.py``).

``gridpilot`` (``client.cli``) loads them only when one is named; ``python -m coordinator``
runs them alone. Errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

import typer
import typer.main

from coordinator.errors import CoordinatorError
from protocol import Role, TokenKind

EXIT_USAGE = 2
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATA_DIR_OPTION = typer.Option(
    Path("gridpilot-data"), "--data-dir", envvar="GRIDPILOT_DATA_DIR", help="Coordinator data dir"
)
ACCESS_TTL_DAYS = 30.0
LOGIN_TTL_DAYS = 365.0


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.echo(f"gridpilot: {message}", err=True)
    return typer.Exit(code)


def usable_dir(path: Path, what: str, *, create: bool) -> Path:
    """``path`` as a directory this process can write in (created when ``create``)."""
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise fail(f"cannot use {path} as the {what}: it is not a directory") from exc
    except OSError as exc:
        raise fail(f"cannot use {path} as the {what}: {exc.strerror or exc}") from exc
    if not path.is_dir():
        raise fail(f"cannot use {path} as the {what}: no such directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise fail(f"cannot use {path} as the {what}: permission denied")
    return path.resolve()


def serve(
    data_dir: Path = DATA_DIR_OPTION,
    host: Optional[str] = typer.Option(None, help="Address to listen on [127.0.0.1]"),
    port: Optional[int] = typer.Option(None, help="Port to listen on [8080]"),
    max_sandbox_bytes: Optional[int] = typer.Option(None, help="Largest sandbox accepted"),
    max_request_bytes: Optional[int] = typer.Option(None, help="Largest JSON request body"),
    heartbeat_interval_s: Optional[float] = typer.Option(None, help="Pilots' heartbeat period"),
    match_retry_after_s: Optional[float] = typer.Option(
        None, help="How long a pilot that got no job waits before asking again"
    ),
    rate_limit_per_s: Optional[float] = typer.Option(
        None, help="Requests per second per token, per pilot for pilots; 0: no limit [200]"
    ),
    rate_limit_burst: Optional[int] = typer.Option(None, help="Burst size per token [1000]"),
    match_timeout_s: Optional[float] = typer.Option(
        None, help="Reschedule a Matched job not started within this [600]"
    ),
    heartbeat_timeout_s: Optional[float] = typer.Option(
        None, help="A running job silent this long is Stalled [3 x heartbeat interval]"
    ),
    stalled_grace_s: Optional[float] = typer.Option(
        None, help="A Stalled job is rescheduled after this [600]"
    ),
    max_reschedules: Optional[int] = typer.Option(None, help="Reschedulings per job [3]"),
    sweep_interval_s: Optional[float] = typer.Option(None, help="Lease check period [10]"),
    max_log_chunk_bytes: Optional[int] = typer.Option(None, help="Largest log chunk [1 MiB]"),
    max_log_bytes: Optional[int] = typer.Option(None, help="Log bytes kept per job [100 MiB]"),
    tls_cert: Optional[Path] = typer.Option(None, help="PEM certificate chain: serve HTTPS"),
    tls_key: Optional[Path] = typer.Option(None, help="PEM private key of --tls-cert"),
    fair_share: Optional[Path] = typer.Option(
        None, help="YAML/JSON file of owners' weights per VO: {vo: {owner: weight}}"
    ),
    fair_share_half_life_s: Optional[float] = typer.Option(
        None, help="Owners' past usage counts half after this long [3600]"
    ),
    metrics_access: Optional[str] = typer.Option(
        None, help="Who may read /metrics: open (no token) or admin [open]"
    ),
    sites: Optional[str] = typer.Option(
        None, help="Comma-separated known site names: jobs naming others are refused"
    ),
    default_site: Optional[str] = typer.Option(
        None, help="Site recorded for pilots that name none (default: the pilot's host name)"
    ),
    login_token_ttl_s: Optional[int] = typer.Option(
        None, help="Lifetime of the tokens 'gridpilot login' gets [43200, 12 h]"
    ),
    database_url: Optional[str] = typer.Option(
        None,
        envvar="GRIDPILOT_DATABASE_URL",
        help="postgresql+psycopg://USER@HOST/NAME for replicas [the data dir's SQLite]",
    ),
    sandbox_store: Optional[str] = typer.Option(
        None, help="Sandboxes and logs: a directory or s3://BUCKET/PREFIX [the data dir]"
    ),
    signing_key_file: Optional[Path] = typer.Option(
        None, help="The token signing key replicas share [DATA_DIR/signing-key.pem]"
    ),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING, ERROR"),
) -> None:
    """Run the coordinator (SQLite database and sandboxes in the data dir, or PostgreSQL
    and a sandbox store shared by replicas: docs/scale-out.md).

    Every setting can also come from a GRIDPILOT_<SETTING> environment variable.
    """
    from coordinator.certs import check_server_files
    from coordinator.server import run_server
    from coordinator.settings import Settings

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT, force=True)
    root = usable_dir(data_dir, "data dir", create=True)
    try:
        settings = Settings.from_env(
            root,
            host=host,
            port=port,
            max_sandbox_bytes=max_sandbox_bytes,
            max_request_bytes=max_request_bytes,
            heartbeat_interval_s=heartbeat_interval_s,
            match_retry_after_s=match_retry_after_s,
            rate_limit_per_s=rate_limit_per_s,
            rate_limit_burst=rate_limit_burst,
            match_timeout_s=match_timeout_s,
            heartbeat_timeout_s=heartbeat_timeout_s,
            stalled_grace_s=stalled_grace_s,
            max_reschedules=max_reschedules,
            sweep_interval_s=sweep_interval_s,
            max_log_chunk_bytes=max_log_chunk_bytes,
            max_log_bytes=max_log_bytes,
            tls_cert_file=str(tls_cert.resolve()) if tls_cert else None,
            tls_key_file=str(tls_key.resolve()) if tls_key else None,
            fair_share_file=str(fair_share.resolve()) if fair_share else None,
            fair_share_half_life_s=fair_share_half_life_s,
            metrics_access=metrics_access,
            sites=sites,
            default_site=default_site,
            login_token_ttl_s=login_token_ttl_s,
            database_url=database_url,
            sandbox_store=sandbox_store,
            signing_key_file=str(signing_key_file.resolve()) if signing_key_file else None,
        )
        if settings.tls_cert_file:
            check_server_files(settings.tls_cert_file, settings.tls_key_file)
        run_server(settings)
    except CoordinatorError as exc:
        raise fail(exc.message) from exc


def token_create(
    role: Role = typer.Option(Role.USER, help="user, pilot or admin"),
    subject: str = typer.Option(..., help="Who the token is for (user name or pilot factory)"),
    vo: str = typer.Option(..., help="Virtual organisation"),
    group: str = typer.Option("", help="Group (DIRAC's OwnerGroup)"),
    login: bool = typer.Option(
        False,
        "--login",
        help="A login credential for a user, good only for 'gridpilot login' (which gets "
        "short-lived tokens with it); lasts a year unless --ttl-days",
    ),
    ttl_days: Optional[float] = typer.Option(
        None,
        help=f"Days until it expires ({ACCESS_TTL_DAYS:g}; login credentials {LOGIN_TTL_DAYS:g})",
    ),
    data_dir: Path = DATA_DIR_OPTION,
    init: bool = typer.Option(
        False, "--init", help="Create the data dir and its signing key if there is none yet"
    ),
    signing_key_file: Optional[Path] = typer.Option(
        None,
        envvar="GRIDPILOT_SIGNING_KEY_FILE",
        help="The key replicas share, instead of the data dir's (docs/scale-out.md)",
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON output"),
) -> None:
    """Print a token signed with the coordinator's key (run next to its data dir).

    The token goes to stdout, its id and expiry to stderr (--json: all as JSON on stdout).
    A data dir without a coordinator's signing key is refused, unless --init: a token
    signed with another key would be refused by the coordinator.
    """
    from coordinator.logic.auth import SIGNING_KEY_FILE, load_or_create_signing_key
    from coordinator.logic.tokens import issue

    if signing_key_file is not None:
        try:
            key = load_or_create_signing_key(data_dir, signing_key_file)
        except CoordinatorError as exc:
            raise fail(exc.message) from exc
    elif not init and not (data_dir / SIGNING_KEY_FILE).is_file():
        raise fail(
            f"{data_dir} holds no coordinator (no {SIGNING_KEY_FILE}): give the --data-dir "
            "'gridpilot serve' uses, or --init to start a new one there"
        )
    else:
        key = None
    days = ttl_days if ttl_days is not None else (LOGIN_TTL_DAYS if login else ACCESS_TTL_DAYS)
    kind = TokenKind.LOGIN if login else TokenKind.ACCESS
    try:
        if key is None:
            key = load_or_create_signing_key(usable_dir(data_dir, "data dir", create=init))
        issued = issue(
            key,
            subject=subject,
            vo=vo,
            role=role,
            ttl_s=int(timedelta(days=days).total_seconds()),
            group=group,
            kind=kind,
        )
    except CoordinatorError as exc:
        raise fail(exc.message) from exc
    except OSError as exc:
        raise fail(f"cannot use {data_dir}: {exc.strerror or exc}") from exc
    expires_at = issued.claims.expires_at.isoformat()
    if as_json:
        fields = {"token": issued.token, "token_id": issued.claims.token_id, "kind": kind.value}
        typer.echo(json.dumps({**fields, "expires_at": expires_at}))
        return
    typer.echo(issued.token)
    what = "login credential" if login else "token"
    typer.echo(f"{what} id {issued.claims.token_id}, expires {expires_at}", err=True)


certs_app = typer.Typer(help="TLS certificates for trying HTTPS out.", no_args_is_help=True)


@certs_app.callback()
def _certs() -> None:
    """TLS certificates for trying HTTPS out."""


@certs_app.command("dev")
def certs_dev(
    out: Path = typer.Option(..., "--out", help="Directory to write the PEM files into"),
    hosts: list[str] = typer.Option([], "--host", help="Extra server name or IP (repeatable)"),
) -> None:
    """Write a development CA and a server certificate for localhost (and --host names)."""
    from coordinator.certs import write_dev_certificates

    try:
        written = write_dev_certificates(out, hosts)
    except CoordinatorError as exc:
        raise fail(exc.message, 1) from exc
    except OSError as exc:
        raise fail(f"cannot write into {out}: {exc.strerror or exc}") from exc
    typer.echo(f"CA certificate:     {written.ca_cert}  (give clients --ca-bundle this file)")
    typer.echo(f"CA key:             {written.ca_key}")
    typer.echo(f"server certificate: {written.server_cert}  (for {', '.join(written.hosts)})")
    typer.echo(f"server key:         {written.server_key}")
    typer.echo(f"gridpilot serve --tls-cert {written.server_cert} --tls-key {written.server_key}")


def _single(name: str, function: Any) -> Any:
    app = typer.Typer()
    app.command(name)(function)
    return typer.main.get_command(app)


def serve_command() -> Any:
    return _single("serve", serve)


def token_create_command() -> Any:
    return _single("create", token_create)


def certs_command() -> Any:
    return typer.main.get_command(certs_app)


def db_command() -> Any:
    from coordinator.db_cli import db_app

    return typer.main.get_command(db_app)


def server_app() -> typer.Typer:
    """``python -m coordinator``: the server's commands alone."""
    app = typer.Typer(help="gridpilot coordinator (server side)", no_args_is_help=True)
    app.command("serve")(serve)
    token_app = typer.Typer(help="Signed access tokens.", no_args_is_help=True)
    token_app.command("create")(token_create)
    app.add_typer(token_app, name="token")
    app.add_typer(certs_app, name="certs")
    from coordinator.db_cli import db_app

    app.add_typer(db_app, name="db")
    return app


def main() -> None:
    server_app()(prog_name="gridpilot")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())  # type: ignore[func-returns-value]
