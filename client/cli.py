"""``gridpilot``: the one command for users, sites and operators.

Users' commands (submit, status, logs, login, ...) are defined in this package. The
server's (``serve``, ``token create``, ``certs``) and the worker's (``pilot``, ``checks``)
are loaded only when named: ``gridpilot pilot`` imports nothing of the coordinator, and a
user command nothing of the server's frameworks.

The only place on the client side that turns errors into exit codes (docs/cli.md):

====  ================================================================================
0     done
1     the coordinator refused (some of) it: no such job, a job that cannot change so
2     usage: a bad option or URL, a file that cannot be read, an invalid job description
3     the coordinator could not be reached (or what answered is not one)
4     not authorised: no token, or a token refused (expired, revoked, wrong role)
70    an internal error: a bug in gridpilot (GRIDPILOT_DEBUG=1 shows the traceback)
====  ================================================================================

``gridpilot pilot`` and ``gridpilot checks`` keep their own exit codes (docs/pilot.md).
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
import typer.main

from client import access_cli, explain_cli, jobs_cli, tracking_cli
from client.connection import CONNECTION_OPTIONS, ConnectionFactory, ConnectionOptions
from client.errors import ClientError, InputError, NotAuthorised, Unreachable, UsageError
from client.invocation import CONNECTION_MARK, Invocation, PartialFailure, say_error
from client.lazy import LazyGroup
from client.sessions import SessionStore, default_session_file
from protocol import __version__

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_AUTHORISED = 4
EXIT_INTERNAL = 70
DEBUG_ENV = "GRIDPILOT_DEBUG"
CONNECTION_PANEL = "Connection (before or after the command)"


class RootGroup(LazyGroup):
    lazy = {
        "serve": "coordinator.cli:serve_command",
        "pilot": "client.cli:pilot_command",
        "checks": "client.cli:checks_command",
        "certs": "coordinator.cli:certs_command",
        "db": "coordinator.cli:db_command",
    }


def pilot_command() -> Any:
    from pilot.cli import pilot_command as run_pilot

    app = typer.Typer()
    app.command("pilot")(run_pilot)
    return typer.main.get_command(app)


def checks_command() -> Any:
    from pilot.cli import checks_app

    return typer.main.get_command(checks_app)


app = typer.Typer(
    cls=RootGroup,
    help="gridpilot: pilot agent, job wrapper and job coordinator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gridpilot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True),
    url: Optional[str] = typer.Option(
        None, "--url", help="Coordinator URL (env GRIDPILOT_URL, else the login session's)"
    ),
    token: Optional[str] = typer.Option(None, "--token", help="Access token (env GRIDPILOT_TOKEN)"),
    token_file: Optional[Path] = typer.Option(
        None, "--token-file", help="File holding the access token (env GRIDPILOT_TOKEN_FILE)"
    ),
    ca_bundle: Optional[Path] = typer.Option(
        None,
        "--ca-bundle",
        help="CA certificates (PEM) to verify an https coordinator (env GRIDPILOT_CA_BUNDLE)",
    ),
    timeout_s: Optional[float] = typer.Option(
        None, "--timeout-s", help="Longest wait for an answer [30]"
    ),
    connect_timeout_s: Optional[float] = typer.Option(
        None, "--connect-timeout-s", help="Longest wait for the connection [2]"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Say more, and errors' details"),
) -> None:
    """gridpilot: pilot agent, job wrapper and job coordinator."""
    run = ctx.ensure_object(Invocation)
    run.verbose = verbose
    run.options.verbose = verbose
    typed = {
        "url": url,
        "token": token,
        "token_file": token_file,
        "ca_bundle": ca_bundle,
        "timeout_s": timeout_s,
        "connect_timeout_s": connect_timeout_s,
    }
    for name, value in typed.items():
        run.options.record(name, value)
    ctx.call_on_close(run.connections.close)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="gridpilot: %(message)s"
    )
    # A user command fails in one line; the transport's retry notes are for -v.
    logging.getLogger("pilot.client").setLevel(logging.DEBUG if verbose else logging.ERROR)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    if ctx.invoked_subcommand == "pilot":
        # The pilot reads its own options; what was typed before `pilot` is passed on.
        given = {"url": url, "token_file": token_file, "ca_bundle": ca_bundle}
        ctx.default_map = {"pilot": {k: str(v) for k, v in given.items() if v is not None}}


@app.command()
def demo(
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", help="Keep the coordinator's data here (default: a temporary dir)"
    ),
    timeout_s: float = typer.Option(120.0, help="Give up if the job is not done by then"),
) -> None:
    """Run the tutorial job end to end on this machine: coordinator, pilot, job, output."""
    from client.demo import run_demo

    raise typer.Exit(run_demo(data_dir, timeout_s, typer.echo))


jobs_cli.register(app)
tracking_cli.register(app)
explain_cli.register(app)
access_cli.register(app)


def _marked(callback: Optional[Callable[..., Any]]) -> bool:
    while callback is not None:
        if getattr(callback, CONNECTION_MARK, False):
            return True
        callback = getattr(callback, "__wrapped__", None)
    return False


def _commands(group: Any) -> list[Any]:
    found = []
    for command in getattr(group, "commands", {}).values():
        found.append(command)
        found += _commands(command)
    return found


def add_connection_options(root: Any) -> Any:
    """Give every command that talks to the coordinator a copy of the root's connection
    options: typed after the sub-command they win over the same typed before it."""
    templates = [param for param in root.params if param.name in CONNECTION_OPTIONS]
    for command in _commands(root):
        if not _marked(command.callback):
            continue
        for template in templates:
            option = copy.copy(template)
            option.expose_value = False
            option.callback = _recorder(template.name)
            if hasattr(option, "rich_help_panel"):
                option.rich_help_panel = CONNECTION_PANEL
            command.params.append(option)
    return root


def _recorder(name: str) -> Callable[[Any, Any, Any], Any]:
    def record(ctx: Any, _param: Any, value: Any) -> Any:
        run = ctx.find_object(Invocation)
        if run is not None:
            run.options.record(name, value)
        return value

    return record


def exit_code(error: ClientError) -> int:
    if isinstance(error, (UsageError, InputError)):
        return EXIT_USAGE
    if isinstance(error, Unreachable):
        return EXIT_UNREACHABLE
    if isinstance(error, NotAuthorised):
        return EXIT_NOT_AUTHORISED
    return EXIT_REFUSED


def main() -> None:
    env = dict(os.environ)
    options = ConnectionOptions(env=env)
    run = Invocation(options, ConnectionFactory(options, SessionStore(default_session_file(env))))
    command = add_connection_options(typer.main.get_command(app))
    try:
        command.main(prog_name="gridpilot", obj=run)
    except PartialFailure:
        sys.exit(EXIT_REFUSED)
    except ClientError as exc:
        say_error(exc, run)
        sys.exit(exit_code(exc))
    except Exception as exc:  # the command's boundary: a bug, said in one line
        logger.debug("internal error", exc_info=exc)
        if env.get(DEBUG_ENV):
            raise
        typer.echo(
            f"gridpilot: internal error: {type(exc).__name__}: {exc} (this is a bug in "
            f"gridpilot; {DEBUG_ENV}=1 shows where)",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":  # pragma: no cover
    main()
