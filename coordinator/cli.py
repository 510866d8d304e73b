"""The ``gridpilot`` command: server, tokens, users' job commands, the demo, and the
worker-side commands (``pilot``, ``checks``) from ``pilot.cli``.

With ``tracking_cli``, ``access_cli`` and ``cli_session``, the only code here that prints or exits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from coordinator.access_cli import add_access_commands
from coordinator.cli_session import (
    DATA_DIR_OPTION,
    EXIT_USAGE,
    JSON_OPTION,
    ROOT_OPTIONS,
    TOKEN_FILE_OPTION,
    TOKEN_OPTION,
    URL_OPTION,
    call,
    connect,
    fail,
)
from coordinator.display import format_history, format_status
from coordinator.errors import CoordinatorError
from coordinator.tracking_cli import add_tracking_commands
from pilot.cli import add_worker_commands, setup_logging
from protocol import __version__

app = typer.Typer(
    help="gridpilot: pilot agent, job wrapper and job coordinator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
add_access_commands(app)
add_worker_commands(app)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gridpilot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True),
    ca_bundle: Optional[Path] = typer.Option(
        None,
        "--ca-bundle",
        envvar="GRIDPILOT_CA_BUNDLE",
        help="CA certificates (PEM) to verify an https coordinator with [system CAs]",
    ),
) -> None:
    """gridpilot: pilot agent, job wrapper and job coordinator."""
    # Set once per invocation, before any subcommand runs; every client command reads it.
    ROOT_OPTIONS["ca_bundle"] = ca_bundle


# -- the server -------------------------------------------------------------------


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
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING, ERROR"),
) -> None:
    """Run the coordinator (SQLite database and sandboxes in the data dir).

    Every setting can also come from a GRIDPILOT_<SETTING> environment variable.
    """
    from coordinator.certs import check_server_files
    from coordinator.server import run_server
    from coordinator.settings import Settings

    setup_logging(log_level)
    try:
        settings = Settings.from_env(
            data_dir.resolve(),
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
        )
        if settings.tls_cert_file:
            check_server_files(settings.tls_cert_file, settings.tls_key_file)
        run_server(settings)
    except CoordinatorError as exc:
        raise fail(exc.message, EXIT_USAGE) from exc


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
    """Submit jobs; print "JobID = N" for each job created."""
    from coordinator.submission import submit_file

    client = connect(url, token, token_file)
    all_ids: list[int] = []
    for path in files:
        if not path.is_file():
            raise fail(f"no such file: {path}", EXIT_USAGE)
        reply = call(submit_file, client, path, fmt)
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
    client = connect(url, token, token_file)
    infos = [call(client.job, job_id) for job_id in job_ids]
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
    client = connect(url, token, token_file)
    history = call(client.history, job_id)
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

    client = connect(url, token, token_file)
    target, names = call(retrieve_output, client, job_id, out_dir)
    typer.echo(f"Job output sandbox retrieved in {target}/ ({len(names)} file(s))")


@app.command()
def kill(
    job_ids: list[int] = typer.Argument(..., help="Job ids"),
    url: Optional[str] = URL_OPTION,
    token: Optional[str] = TOKEN_OPTION,
    token_file: Optional[Path] = TOKEN_FILE_OPTION,
) -> None:
    """Kill jobs (waiting ones at once, running ones through their pilot)."""
    client = connect(url, token, token_file)
    for job_id in job_ids:
        info = call(client.kill, job_id)
        typer.echo(f"Job {job_id}: kill requested, status {info.status.value}")


@app.command()
def delete(
    job_ids: list[int] = typer.Argument(..., help="Job ids"),
    url: Optional[str] = URL_OPTION,
    token: Optional[str] = TOKEN_OPTION,
    token_file: Optional[Path] = TOKEN_FILE_OPTION,
) -> None:
    """Delete finished or waiting jobs."""
    client = connect(url, token, token_file)
    for job_id in job_ids:
        call(client.delete, job_id)
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
        raise fail(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from exc
    try:
        description = parse_description(text, description_format(path, fmt))
        result: Any = expand_jobs(description) if expand else description
    except CoordinatorError as exc:
        raise fail(f"{path}: {exc.message}") from exc
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


add_tracking_commands(app, connect, call)


def main() -> None:
    app(prog_name="gridpilot")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())  # type: ignore[func-returns-value]
