"""The ``gridpilot`` command: server, tokens, users' job commands, the demo, and the
worker-side commands (``pilot``, ``checks``) from ``pilot.cli``.

The only place on the coordinator side that prints or exits.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

import typer

from coordinator.display import format_history, format_status
from coordinator.errors import CoordinatorError
from pilot import __version__
from pilot.cli import add_worker_commands, setup_logging
from pilot.client import CoordinatorClient, RetryPolicy
from pilot.errors import CoordinatorRejected, CoordinatorUnreachable
from pilot.protocol import Role

EXIT_ERROR = 1
EXIT_USAGE = 2

app = typer.Typer(
    help="gridpilot: pilot agent, job wrapper and job coordinator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
token_app = typer.Typer(help="Signed access tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
add_worker_commands(app)

URL_OPTION = typer.Option(None, "--url", envvar="GRIDPILOT_URL", help="Coordinator URL")
TOKEN_OPTION = typer.Option(None, "--token", envvar="GRIDPILOT_TOKEN", help="Access token")
TOKEN_FILE_OPTION = typer.Option(
    None, "--token-file", envvar="GRIDPILOT_TOKEN_FILE", help="File holding the access token"
)
JSON_OPTION = typer.Option(False, "--json", help="Machine-readable JSON output")
DATA_DIR_OPTION = typer.Option(
    Path("gridpilot-data"), "--data-dir", envvar="GRIDPILOT_DATA_DIR", help="Coordinator data dir"
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gridpilot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True),
) -> None:
    """gridpilot: pilot agent, job wrapper and job coordinator."""


def _fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    typer.echo(f"gridpilot: {message}", err=True)
    return typer.Exit(code)


def _client(
    url: Optional[str], token: Optional[str], token_file: Optional[Path]
) -> CoordinatorClient:
    if not url:
        raise _fail("no coordinator URL: give --url or set GRIDPILOT_URL", EXIT_USAGE)
    if not token and token_file:
        token = token_file.expanduser().read_text(encoding="utf-8").strip()
    if not token:
        raise _fail("no token: give --token/--token-file or set GRIDPILOT_TOKEN", EXIT_USAGE)
    verify: Any = os.environ.get("GRIDPILOT_CA_BUNDLE") or True
    return CoordinatorClient(url, token, verify=verify, retry=RetryPolicy(max_retry_s=20.0))


def _call(func: Any, *args: Any) -> Any:
    """Run one client call; turn the coordinator's refusals into a clear message and exit 1."""
    try:
        return func(*args)
    except CoordinatorRejected as exc:
        detail = f" {json.dumps(exc.details)}" if exc.details else ""
        raise _fail(f"{exc.message} ({exc.code}, HTTP {exc.status}){detail}") from exc
    except CoordinatorUnreachable as exc:
        raise _fail(str(exc)) from exc
    except CoordinatorError as exc:
        raise _fail(exc.message) from exc


# -- server and tokens -------------------------------------------------------------------


@app.command()
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
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING, ERROR"),
) -> None:
    """Run the coordinator (SQLite database and sandboxes in the data dir).

    Every setting can also come from a GRIDPILOT_<SETTING> environment variable.
    """
    from coordinator.server import run_server
    from coordinator.settings import Settings

    setup_logging(log_level)
    settings = Settings.from_env(
        data_dir.resolve(),
        host=host,
        port=port,
        max_sandbox_bytes=max_sandbox_bytes,
        max_request_bytes=max_request_bytes,
        heartbeat_interval_s=heartbeat_interval_s,
        match_retry_after_s=match_retry_after_s,
    )
    try:
        run_server(settings)
    except CoordinatorError as exc:
        raise _fail(exc.message, EXIT_USAGE) from exc


@token_app.command("create")
def token_create(
    role: Role = typer.Option(Role.USER, help="user, pilot or admin"),
    subject: str = typer.Option(..., help="Who the token is for (user name or pilot factory)"),
    vo: str = typer.Option(..., help="Virtual organisation"),
    group: str = typer.Option("", help="Group (DIRAC's OwnerGroup)"),
    ttl_days: float = typer.Option(30.0, help="Days until it expires"),
    data_dir: Path = DATA_DIR_OPTION,
) -> None:
    """Print a token signed with the coordinator's key (run next to its data dir)."""
    from coordinator.logic.auth import issue_token, load_or_create_signing_key

    key = load_or_create_signing_key(data_dir)
    ttl_s = int(timedelta(days=ttl_days).total_seconds())
    typer.echo(issue_token(key, subject=subject, vo=vo, role=role, ttl_s=ttl_s, group=group))


# -- users' job commands ------------------------------------------------------------------


@app.command()
def submit(
    files: list[Path] = typer.Argument(..., help="JDL, JSON or YAML job descriptions"),
    fmt: Optional[str] = typer.Option(
        None, "--format", help="jdl, json or yaml (default: by suffix)"
    ),
    url: Optional[str] = URL_OPTION,
    token: Optional[str] = TOKEN_OPTION,
    token_file: Optional[Path] = TOKEN_FILE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Submit jobs; print ``JobID = N`` for each job created."""
    from coordinator.submission import submit_file

    client = _client(url, token, token_file)
    all_ids: list[int] = []
    for path in files:
        if not path.is_file():
            raise _fail(f"no such file: {path}", EXIT_USAGE)
        reply = _call(submit_file, client, path, fmt)
        all_ids.extend(reply.job_ids)
        if not as_json:
            for job_id in reply.job_ids:
                typer.echo(f"JobID = {job_id}")
    if as_json:
        typer.echo(json.dumps({"job_ids": all_ids}))


@app.command()
def status(
    job_ids: list[int] = typer.Argument(..., help="Job ids"),
    url: Optional[str] = URL_OPTION,
    token: Optional[str] = TOKEN_OPTION,
    token_file: Optional[Path] = TOKEN_FILE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show jobs' status in DIRAC's layout."""
    client = _client(url, token, token_file)
    infos = [_call(client.job, job_id) for job_id in job_ids]
    if as_json:
        typer.echo(json.dumps([info.to_dict() for info in infos], indent=2))
        return
    for info in infos:
        typer.echo(format_status(info))


@app.command("logging-info")
def logging_info(
    job_id: int = typer.Argument(..., help="Job id"),
    url: Optional[str] = URL_OPTION,
    token: Optional[str] = TOKEN_OPTION,
    token_file: Optional[Path] = TOKEN_FILE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a job's status history (time, status, minor status, source)."""
    client = _client(url, token, token_file)
    history = _call(client.history, job_id)
    if as_json:
        typer.echo(json.dumps([entry.to_dict() for entry in history], indent=2))
        return
    for line in format_history(history):
        typer.echo(line)


@app.command("get-output")
def get_output(
    job_id: int = typer.Argument(..., help="Job id"),
    out_dir: Path = typer.Option(Path("."), "--dir", help="Write to DIR/<job id>/"),
    url: Optional[str] = URL_OPTION,
    token: Optional[str] = TOKEN_OPTION,
    token_file: Optional[Path] = TOKEN_FILE_OPTION,
) -> None:
    """Download a job's output sandbox into DIR/<job id>/, checksum verified."""
    from coordinator.output import retrieve_output

    client = _client(url, token, token_file)
    target, names = _call(retrieve_output, client, job_id, out_dir)
    typer.echo(f"Job output sandbox retrieved in {target}/ ({len(names)} file(s))")


@app.command()
def kill(
    job_ids: list[int] = typer.Argument(..., help="Job ids"),
    url: Optional[str] = URL_OPTION,
    token: Optional[str] = TOKEN_OPTION,
    token_file: Optional[Path] = TOKEN_FILE_OPTION,
) -> None:
    """Kill jobs (waiting ones at once, running ones through their pilot)."""
    client = _client(url, token, token_file)
    for job_id in job_ids:
        info = _call(client.kill, job_id)
        typer.echo(f"Job {job_id}: kill requested, status {info.status.value}")


@app.command()
def delete(
    job_ids: list[int] = typer.Argument(..., help="Job ids"),
    url: Optional[str] = URL_OPTION,
    token: Optional[str] = TOKEN_OPTION,
    token_file: Optional[Path] = TOKEN_FILE_OPTION,
) -> None:
    """Delete finished or waiting jobs."""
    client = _client(url, token, token_file)
    for job_id in job_ids:
        _call(client.delete, job_id)
        typer.echo(f"Job {job_id}: deleted")


@app.command()
def jdl(
    path: Path = typer.Argument(..., help="A JDL (or .json/.yaml) job description"),
    expand: bool = typer.Option(False, "--expand", help="Print the jobs a parametric JDL gives"),
    fmt: Optional[str] = typer.Option(
        None, "--format", help="jdl, json or yaml (default: by suffix)"
    ),
) -> None:
    """Parse a job description locally and print it as JSON (no coordinator needed)."""
    from coordinator.logic.description import parse_description
    from coordinator.logic.parametric import expand as expand_jobs
    from coordinator.submission import description_format

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from exc
    try:
        description = parse_description(text, description_format(path, fmt))
        result: Any = expand_jobs(description) if expand else description
    except CoordinatorError as exc:
        raise _fail(f"{path}: {exc.message}") from exc
    typer.echo(json.dumps(result, indent=2))


@app.command()
def demo(
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", help="Keep the coordinator's data here (default: a temporary dir)"
    ),
    timeout_s: float = typer.Option(120.0, help="Give up if the job is not done by then"),
) -> None:
    """Run the tutorial job end to end on this machine: coordinator, pilot, job, output."""
    from coordinator.demo import run_demo

    setup_logging("WARNING")
    raise typer.Exit(run_demo(data_dir, timeout_s, typer.echo))


def main() -> None:
    app(prog_name="gridpilot")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())  # type: ignore[func-returns-value]
