"""Access: ``gridpilot login`` / ``logout`` / ``whoami`` for users, and the ``token`` commands
(``token create`` signs with the coordinator's key, next to its data dir, and is loaded
from the coordinator's package only when named)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from client.errors import InputError
from client.invocation import JSON_OPTION, invocation, uses_coordinator
from client.lazy import LazyGroup
from client.sessions import default_credential_file, hours_left, seconds_until


class TokenGroup(LazyGroup):
    lazy = {"create": "coordinator.cli:token_create_command"}


token_app = typer.Typer(cls=TokenGroup, help="Signed access tokens.", no_args_is_help=True)


@token_app.command("revoke")
@uses_coordinator
def token_revoke(
    ctx: typer.Context,
    token_ids: list[str] = typer.Argument(..., help="Token ids (printed by 'token create')"),
    reason: str = typer.Option("", help="Why, kept with the revocation"),
) -> None:
    """Revoke tokens (needs an admin token): refused from now on. Revoking a login
    credential also refuses every token it gave."""
    client = invocation(ctx).client()
    for token_id in token_ids:
        done = client.revoke_token(token_id, reason)
        typer.echo(f"Token {token_id}: revoked at {done.revoked_at} by {done.revoked_by}")


@token_app.command("revoked")
@uses_coordinator
def token_revoked(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List revoked token ids (needs an admin token)."""
    run = invocation(ctx)
    run.json_output = as_json
    revoked = run.client().revoked_tokens()
    if as_json:
        typer.echo(json.dumps([item.to_dict() for item in revoked], indent=2))
        return
    for item in revoked:
        typer.echo(f"{item.token_id}  {item.revoked_at}  {item.revoked_by}  {item.reason}")


@uses_coordinator
def login(
    ctx: typer.Context,
    credential_file: Optional[Path] = typer.Option(
        None,
        "--credential-file",
        help="The login credential an admin gave you "
        "(env GRIDPILOT_CREDENTIAL_FILE, else ~/.config/gridpilot/credential)",
    ),
    ttl_s: Optional[int] = typer.Option(
        None, "--ttl-s", help="Lifetime wanted for the token (the coordinator's, 12 h)"
    ),
) -> None:
    """Exchange your login credential for a short-lived token, kept for the next commands
    and renewed when it runs out (as dirac-proxy-init / dirac-login)."""
    run = invocation(ctx)
    factory = run.connections
    path = credential_file or default_credential_file(run.options.env)
    if not path.expanduser().is_file():
        raise InputError(
            f"no login credential at {path}: ask your coordinator's admin for one "
            "('gridpilot token create --login') and give it with --credential-file"
        )
    session_url = factory.sessions.load()
    url = factory.url(session_url)
    session = factory.sessions.login(url, path.expanduser(), factory.connect_with, ttl_s)
    typer.echo(
        f"Logged in to {session.url} as {session.subject} (VO {session.vo}, role "
        f"{session.role}); token valid until {session.expires_at} "
        f"({hours_left(session.seconds_left())} left)"
    )
    typer.echo(f"session kept in {factory.sessions.path}")


def logout(ctx: typer.Context) -> None:
    """Forget the login session (the credential file stays where it is)."""
    sessions = invocation(ctx).connections.sessions
    if sessions.remove():
        typer.echo(f"Logged out: removed {sessions.path}")
    else:
        typer.echo("No login session to remove")


@uses_coordinator
def whoami(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Who the coordinator takes you for: subject, VO, role, group, token expiry (as
    dirac-proxy-info)."""
    run = invocation(ctx)
    run.json_output = as_json
    client = run.client()
    me = client.whoami()
    if as_json:
        typer.echo(json.dumps({**me.to_dict(), "url": client.url}, indent=2))
        return
    left = seconds_until(me.expires_at)
    rows = {
        "subject": me.subject,
        "VO": me.vo,
        "group": me.group or "-",
        "role": me.role.value,
        "token id": me.token_id,
        "expires": f"{me.expires_at} ({hours_left(left)} left)",
        "token from": client.connection.token_source,
        "coordinator": client.url,
    }
    width = max(len(name) for name in rows)
    for name, value in rows.items():
        typer.echo(f"{name:<{width}} : {value}")


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
    app.command()(login)
    app.command()(logout)
    app.command()(whoami)
