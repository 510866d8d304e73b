"""How ``gridpilot`` client commands reach the coordinator and report failures: the shared
options, the client factory (root ``--ca-bundle`` included) and the one place that turns
client errors into a message and an exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from coordinator.errors import CoordinatorError
from pilot.client import CoordinatorClient, RetryPolicy
from pilot.errors import CoordinatorRejected, CoordinatorUnreachable

EXIT_ERROR = 1
EXIT_USAGE = 2

URL_OPTION = typer.Option(None, "--url", envvar="GRIDPILOT_URL", help="Coordinator URL")
TOKEN_OPTION = typer.Option(None, "--token", envvar="GRIDPILOT_TOKEN", help="Access token")
TOKEN_FILE_OPTION = typer.Option(
    None, "--token-file", envvar="GRIDPILOT_TOKEN_FILE", help="File holding the access token"
)
ROOT_OPTIONS: dict[str, Any] = {}
"""Options of the root command that apply to every subcommand (``--ca-bundle``)."""
JSON_OPTION = typer.Option(False, "--json", help="Machine-readable JSON output")
DATA_DIR_OPTION = typer.Option(
    Path("gridpilot-data"), "--data-dir", envvar="GRIDPILOT_DATA_DIR", help="Coordinator data dir"
)


def tls_verify() -> Any:
    """What ``requests`` verifies the coordinator with: the root ``--ca-bundle`` (or
    ``GRIDPILOT_CA_BUNDLE``), else the system's CAs."""
    ca_bundle = ROOT_OPTIONS.get("ca_bundle")
    if ca_bundle is None:
        return True
    if not Path(ca_bundle).is_file():
        raise fail(f"--ca-bundle {ca_bundle}: no such file", EXIT_USAGE)
    return str(ca_bundle)


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    typer.echo(f"gridpilot: {message}", err=True)
    return typer.Exit(code)


def connect(
    url: Optional[str], token: Optional[str], token_file: Optional[Path]
) -> CoordinatorClient:
    if not url:
        raise fail("no coordinator URL: give --url or set GRIDPILOT_URL", EXIT_USAGE)
    if not token and token_file:
        token = token_file.expanduser().read_text(encoding="utf-8").strip()
    if not token:
        raise fail("no token: give --token/--token-file or set GRIDPILOT_TOKEN", EXIT_USAGE)
    return CoordinatorClient(url, token, verify=tls_verify(), retry=RetryPolicy(max_retry_s=20.0))


def call(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one client call; turn the coordinator's refusals into a clear message and exit 1."""
    try:
        return func(*args, **kwargs)
    except CoordinatorRejected as exc:
        detail = f" {json.dumps(exc.details)}" if exc.details else ""
        raise fail(f"{exc.message} ({exc.code}, HTTP {exc.status}){detail}") from exc
    except CoordinatorUnreachable as exc:
        raise fail(str(exc)) from exc
    except CoordinatorError as exc:
        raise fail(exc.message) from exc
