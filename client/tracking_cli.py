"""Following jobs and pilots: ``jobs``, ``logs``, ``peek``, ``pilots``, ``pilot-logs``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from client.errors import UsageError
from client.invocation import (
    GROUP_OPTION,
    ID_FILE_OPTION,
    JOB_IDS_ARGUMENT,
    JSON_OPTION,
    invocation,
    selected_jobs,
    uses_coordinator,
)
from protocol import LOG_STREAMS, JobInfo, PilotInfo

if TYPE_CHECKING:
    from client.api import UserClient

READ_BYTES = 1024 * 1024
PEEK_BYTES = 64 * 1024


def format_jobs_table(infos: Sequence[JobInfo], counts: dict[str, int]) -> list[str]:
    """One line per job (DIRAC's column names), then the counts per status."""
    lines = [f"{'JobID':>7}  {'Status':<11} {'MinorStatus':<32} {'Site':<16} {'Owner':<12} Group"]
    for info in infos:
        lines.append(
            f"{info.job_id:>7}  {info.status.value:<11} {info.minor_status[:32]:<32} "
            f"{info.site[:16]:<16} {info.owner[:12]:<12} {info.job_group}"
        )
    total = sum(counts.values())
    summary = ", ".join(f"{status}: {count}" for status, count in sorted(counts.items()))
    lines.append(f"{total} job(s){': ' + summary if summary else ''}")
    return lines


def format_pilots_table(pilots: Sequence[PilotInfo]) -> list[str]:
    header = f"{'PilotID':<24} {'Host':<16} {'Site':<14} {'Batch job':<18} {'Work':<5} LastSeen"
    lines = [header]
    for pilot in pilots:
        batch = f"{pilot.batch_system}:{pilot.batch_job_id}".strip(":") or "-"
        work = "yes" if pilot.accepting_work else "no"
        lines.append(
            f"{pilot.pilot_id:<24} {pilot.hostname[:16]:<16} {pilot.site[:14]:<14} "
            f"{batch[:18]:<18} {work:<5} {pilot.last_seen[:19]}  jobs: {len(pilot.job_ids)}"
        )
        if not pilot.accepting_work:
            lines.append(f"{'':<24} refuses work: {pilot.refuse_reason or 'no reason given'}")
    return lines


def last_lines(data: bytes, count: int, cut_first: bool) -> list[str]:
    """The last ``count`` lines of ``data``; ``cut_first`` drops a first line read from
    the middle."""
    lines = data.decode("utf-8", errors="replace").splitlines()
    if cut_first and lines:
        lines = lines[1:]
    return lines[-count:] if count > 0 else []


@uses_coordinator
def jobs(
    ctx: typer.Context,
    status: Optional[str] = typer.Option(None, help="Statuses, comma-separated"),
    owner: Optional[str] = typer.Option(None, help="Owner (admins: any user)"),
    site: Optional[str] = typer.Option(None, help="Site"),
    group: Optional[str] = typer.Option(None, "--group", "-g", help="JobGroup"),
    limit: int = typer.Option(100, help="At most this many jobs, newest first"),
    as_json: bool = JSON_OPTION,
) -> None:
    """List your jobs (every user's for admins) with counts per status."""
    run = invocation(ctx)
    run.json_output = as_json
    reply = run.client().list_jobs(
        statuses=status, owner=owner, site=site, group=group, limit=limit
    )
    if as_json:
        typer.echo(json.dumps(reply.to_dict(), indent=2))
        return
    for line in format_jobs_table(reply.jobs, reply.counts):
        typer.echo(line)


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _print_log(client: UserClient, job_id: int, stream: str, follow: bool, poll_s: float) -> None:
    offset = 0
    while True:
        piece = client.read_log(job_id, stream, offset, READ_BYTES)
        _write(piece.data)
        if piece.next_offset < offset:
            typer.echo(f"gridpilot: job {job_id} was rescheduled: its log restarts", err=True)
            offset = 0
            continue
        offset = piece.next_offset
        if piece.data:
            continue
        if not follow or piece.complete:
            return
        time.sleep(poll_s)


@uses_coordinator
def logs(
    ctx: typer.Context,
    job_ids: Optional[list[str]] = JOB_IDS_ARGUMENT,
    id_file: Optional[Path] = ID_FILE_OPTION,
    group: Optional[str] = GROUP_OPTION,
    stream: str = typer.Option("stdout", help="stdout or stderr"),
    follow: bool = typer.Option(False, "--follow", help="Keep printing until the job ends"),
    # One watcher polling 4 times a second costs little; 1 s added up to 1 s of latency.
    poll_s: float = typer.Option(0.25, help="With --follow: seconds between polls"),
) -> None:
    """Print jobs' live logs; --follow waits for more, like tail -f, until each job ends."""
    if stream not in LOG_STREAMS:
        raise UsageError(f"--stream must be stdout or stderr, not {stream!r}")
    run, ids = selected_jobs(ctx, job_ids, id_file, group)
    client = run.client()

    def show(job_id: int) -> None:
        if len(ids) > 1:
            typer.echo(f"==> job {job_id} <==")
        _print_log(client, job_id, stream, follow, poll_s)

    run.each_job(ids, show)
    run.finish()


@uses_coordinator
def peek(
    ctx: typer.Context,
    job_ids: Optional[list[str]] = JOB_IDS_ARGUMENT,
    id_file: Optional[Path] = ID_FILE_OPTION,
    group: Optional[str] = GROUP_OPTION,
    lines: int = typer.Option(20, help="How many lines"),
) -> None:
    """Print the last lines of jobs' stdout as they run (dirac-wms-job-peek)."""
    run, ids = selected_jobs(ctx, job_ids, id_file, group)
    client = run.client()

    def show(job_id: int) -> None:
        size = client.read_log(job_id, "stdout", 0, 1).size_bytes
        start = max(0, size - PEEK_BYTES)
        piece = client.read_log(job_id, "stdout", start, PEEK_BYTES)
        if len(ids) > 1:
            typer.echo(f"==> job {job_id} <==")
        for line in last_lines(piece.data, lines, cut_first=start > 0):
            typer.echo(line)

    run.each_job(ids, show)
    run.finish()


@uses_coordinator
def pilots(
    ctx: typer.Context,
    limit: int = typer.Option(100, help="At most this many pilots, newest first"),
    why: Optional[str] = typer.Option(
        None, "--why", metavar="PILOT_ID", help="Why this pilot's last match got no job"
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """List registered pilots: node, site, batch job, whether they take work and why not;
    with --why, why one pilot's last request for work came back empty."""
    run = invocation(ctx)
    run.json_output = as_json
    if why is not None:
        _why(run.client(), why, as_json)
        return
    found = run.client().pilots(limit)
    if as_json:
        typer.echo(json.dumps({"pilots": [pilot.to_dict() for pilot in found]}, indent=2))
        return
    for line in format_pilots_table(found):
        typer.echo(line)


def _why(client: UserClient, pilot_id: str, as_json: bool) -> None:
    from client.explain_cli import format_pilot_explanation

    answer = client.explain_pilot(pilot_id)
    if as_json:
        typer.echo(json.dumps(answer.to_dict(), indent=2))
        return
    for line in format_pilot_explanation(answer):
        typer.echo(line)


@uses_coordinator
def pilot_logs(
    ctx: typer.Context,
    pilot_id: str = typer.Argument(..., help="Pilot id (see gridpilot pilots)"),
) -> None:
    """Print the log a pilot uploaded (yours to read when it ran one of your jobs)."""
    client = invocation(ctx).client()
    offset = 0
    while True:
        piece = client.read_pilot_log(pilot_id, offset, READ_BYTES)
        if not piece.data:
            return
        _write(piece.data)
        offset = piece.next_offset


def register(app: typer.Typer) -> None:
    app.command()(jobs)
    app.command()(logs)
    app.command()(peek)
    app.command()(pilots)
    app.command("pilot-logs")(pilot_logs)
