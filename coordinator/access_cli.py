"""``gridpilot token ...`` and ``gridpilot certs dev``: access to the coordinator."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Optional

import typer

from coordinator.cli_session import (
    DATA_DIR_OPTION,
    EXIT_USAGE,
    JSON_OPTION,
    TOKEN_FILE_OPTION,
    TOKEN_OPTION,
    URL_OPTION,
    call,
    connect,
    fail,
)
from coordinator.errors import CoordinatorError
from protocol import Role

token_app = typer.Typer(help="Signed access tokens.", no_args_is_help=True)
certs_app = typer.Typer(help="TLS certificates for trying HTTPS out.", no_args_is_help=True)


@token_app.command("create")
def token_create(
    role: Role = typer.Option(Role.USER, help="user, pilot or admin"),
    subject: str = typer.Option(..., help="Who the token is for (user name or pilot factory)"),
    vo: str = typer.Option(..., help="Virtual organisation"),
    group: str = typer.Option("", help="Group (DIRAC's OwnerGroup)"),
    ttl_days: float = typer.Option(30.0, help="Days until it expires"),
    data_dir: Path = DATA_DIR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print a token signed with the coordinator's key (run next to its data dir).

    The token goes to stdout, its id and expiry to stderr (``--json``: all as JSON on stdout).
    """
    from coordinator.logic.auth import load_or_create_signing_key
    from coordinator.logic.tokens import issue

    ttl_s = int(timedelta(days=ttl_days).total_seconds())
    try:
        key = load_or_create_signing_key(data_dir)
        issued = issue(key, subject=subject, vo=vo, role=role, ttl_s=ttl_s, group=group)
    except CoordinatorError as exc:
        raise fail(exc.message, EXIT_USAGE) from exc
    expires_at = issued.claims.expires_at.isoformat()
    if as_json:
        fields = {"token": issued.token, "token_id": issued.claims.token_id}
        typer.echo(json.dumps({**fields, "expires_at": expires_at}))
        return
    typer.echo(issued.token)
    typer.echo(f"token id {issued.claims.token_id}, expires {expires_at}", err=True)


@token_app.command("revoke")
def token_revoke(
    token_ids: list[str] = typer.Argument(..., help="Token ids (printed by 'token create')"),
    reason: str = typer.Option("", help="Why, kept with the revocation"),
    url: Optional[str] = URL_OPTION,
    token: Optional[str] = TOKEN_OPTION,
    token_file: Optional[Path] = TOKEN_FILE_OPTION,
) -> None:
    """Revoke tokens through the coordinator (needs an admin token): refused from now on."""
    client = connect(url, token, token_file)
    for token_id in token_ids:
        body = {"token_id": token_id, "reason": reason}
        reply = call(client.request, "POST", "/tokens/revoke", json=body).json()
        typer.echo(f"Token {token_id}: revoked at {reply['revoked_at']} by {reply['revoked_by']}")


@token_app.command("revoked")
def token_revoked(
    url: Optional[str] = URL_OPTION,
    token: Optional[str] = TOKEN_OPTION,
    token_file: Optional[Path] = TOKEN_FILE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List revoked token ids (needs an admin token)."""
    client = connect(url, token, token_file)
    revoked = call(client.request, "GET", "/tokens/revoked").json()["revoked"]
    if as_json:
        typer.echo(json.dumps(revoked, indent=2))
        return
    for item in revoked:
        fields = ("token_id", "revoked_at", "revoked_by", "reason")
        typer.echo("  ".join(str(item[name]) for name in fields))


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
        raise fail(exc.message) from exc
    typer.echo(f"CA certificate:     {written.ca_cert}  (give clients --ca-bundle this file)")
    typer.echo(f"CA key:             {written.ca_key}")
    typer.echo(f"server certificate: {written.server_cert}  (for {', '.join(written.hosts)})")
    typer.echo(f"server key:         {written.server_key}")
    typer.echo(f"gridpilot serve --tls-cert {written.server_cert} --tls-key {written.server_key}")


def add_access_commands(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
    app.add_typer(certs_app, name="certs")
