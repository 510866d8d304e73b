"""``gridpilot jobs``, ``reschedule``, ``logs``, ``peek``, ``pilots``, ``pilot-logs``: following
jobs and pilots from the command line. A CLI module: it prints; ``coordinator.cli`` adds these
commands to the ``gridpilot`` app and lends its client factory and error handling."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from pilot.client import CoordinatorClient
from protocol import LOG_COMPLETE_HEADER, LOG_NEXT_OFFSET_HEADER, LOG_SIZE_HEADER, JobInfo

URL_OPTION = typer.Option(None, "--url", envvar="GRIDPILOT_URL", help="Coordinator URL")
TOKEN_OPTION = typer.Option(None, "--token", envvar="GRIDPILOT_TOKEN", help="Access token")
TOKEN_FILE_OPTION = typer.Option(
    None, "--token-file", envvar="GRIDPILOT_TOKEN_FILE", help="File holding the access token"
)
JSON_OPTION = typer.Option(False, "--json", help="Machine-readable JSON output")

READ_BYTES = 1024 * 1024
PEEK_BYTES = 64 * 1024
STREAM_CHOICES = ("stdout", "stderr")

Connect = Callable[[Optional[str], Optional[str], Optional[Path]], CoordinatorClient]
Call = Callable[..., Any]


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


def last_lines(data: bytes, count: int, cut_first: bool) -> list[str]:
    """The last ``count`` lines of ``data``; ``cut_first`` drops a first line read from
    the middle."""
    lines = data.decode("utf-8", errors="replace").splitlines()
    if cut_first and lines:
        lines = lines[1:]
    return lines[-count:] if count > 0 else []


class TrackingCommands:
    """The commands, bound to the ``gridpilot`` app's client factory and error handling:
    ``connect`` makes a client, ``call`` runs one client call and turns the coordinator's
    refusals into a message and exit code 1."""

    def __init__(self, connect: Connect, call: Call) -> None:
        self._connect = connect
        self._call = call

    def jobs(
        self,
        status: Optional[str] = typer.Option(None, help="Statuses, comma-separated"),
        owner: Optional[str] = typer.Option(None, help="Owner (admins: any user)"),
        site: Optional[str] = typer.Option(None, help="Site"),
        group: Optional[str] = typer.Option(None, "--group", help="JobGroup"),
        limit: int = typer.Option(100, help="At most this many jobs, newest first"),
        url: Optional[str] = URL_OPTION,
        token: Optional[str] = TOKEN_OPTION,
        token_file: Optional[Path] = TOKEN_FILE_OPTION,
        as_json: bool = JSON_OPTION,
    ) -> None:
        """List your jobs (every user's for admins) with counts per status."""
        client = self._connect(url, token, token_file)
        params = {"status": status, "owner": owner, "site": site, "job_group": group}
        params = {key: value for key, value in params.items() if value}
        reply = self._call(client.request, "GET", "/jobs", params={**params, "limit": limit}).json()
        if as_json:
            typer.echo(json.dumps(reply, indent=2))
            return
        infos = [JobInfo.from_dict(item) for item in reply["jobs"]]
        for line in format_jobs_table(infos, reply.get("counts", {})):
            typer.echo(line)

    def reschedule(
        self,
        job_ids: list[int] = typer.Argument(..., help="Job ids"),
        reset: bool = typer.Option(False, "--reset", help="Zero the reschedule counter first"),
        url: Optional[str] = URL_OPTION,
        token: Optional[str] = TOKEN_OPTION,
        token_file: Optional[Path] = TOKEN_FILE_OPTION,
    ) -> None:
        """Run jobs again from scratch (DIRAC's dirac-wms-job-reschedule)."""
        client = self._connect(url, token, token_file)
        params = {"reset": "true"} if reset else {}
        for job_id in job_ids:
            self._call(client.request, "POST", f"/jobs/{job_id}/reschedule", params=params)
            typer.echo(f"Rescheduled job {job_id}")

    def logs(
        self,
        job_id: int = typer.Argument(..., help="Job id"),
        stream: str = typer.Option("stdout", help="stdout or stderr"),
        follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until it ends"),
        # One watcher polling 4 times a second costs little; 1 s added up to 1 s of latency.
        poll_s: float = typer.Option(0.25, help="With --follow: seconds between polls"),
        url: Optional[str] = URL_OPTION,
        token: Optional[str] = TOKEN_OPTION,
        token_file: Optional[Path] = TOKEN_FILE_OPTION,
    ) -> None:
        """Print a job's live log; --follow waits for more, like tail -f, until the job ends."""
        if stream not in STREAM_CHOICES:
            raise typer.BadParameter("--stream must be stdout or stderr")
        client = self._connect(url, token, token_file)
        path = f"/jobs/{job_id}/logs/{stream}"
        offset = 0
        while True:
            reply = self._call(
                client.request, "GET", path, params={"offset": offset, "limit": READ_BYTES}
            )
            sys.stdout.buffer.write(reply.content)
            sys.stdout.buffer.flush()
            next_offset = int(reply.headers.get(LOG_NEXT_OFFSET_HEADER, offset))
            if next_offset < offset:
                typer.echo(f"gridpilot: job {job_id} was rescheduled: its log restarts", err=True)
                offset = 0
                continue
            offset = next_offset
            if reply.content:
                continue
            if not follow or reply.headers.get(LOG_COMPLETE_HEADER) == "true":
                return
            time.sleep(poll_s)

    def peek(
        self,
        job_id: int = typer.Argument(..., help="Job id"),
        lines: int = typer.Option(20, help="How many lines"),
        url: Optional[str] = URL_OPTION,
        token: Optional[str] = TOKEN_OPTION,
        token_file: Optional[Path] = TOKEN_FILE_OPTION,
    ) -> None:
        """Print the last lines of a job's stdout as it runs (DIRAC's dirac-wms-job-peek)."""
        client = self._connect(url, token, token_file)
        path = f"/jobs/{job_id}/logs/stdout"
        size = int(
            self._call(client.request, "GET", path, params={"limit": 1}).headers[LOG_SIZE_HEADER]
        )
        start = max(0, size - PEEK_BYTES)
        reply = self._call(
            client.request, "GET", path, params={"offset": start, "limit": PEEK_BYTES}
        )
        for line in last_lines(reply.content, lines, cut_first=start > 0):
            typer.echo(line)

    def pilots(
        self,
        limit: int = typer.Option(100, help="At most this many pilots, newest first"),
        url: Optional[str] = URL_OPTION,
        token: Optional[str] = TOKEN_OPTION,
        token_file: Optional[Path] = TOKEN_FILE_OPTION,
        as_json: bool = JSON_OPTION,
    ) -> None:
        """List registered pilots: node, site, batch job, whether they take work and why not."""
        client = self._connect(url, token, token_file)
        reply = self._call(client.request, "GET", "/pilots", params={"limit": limit}).json()
        if as_json:
            typer.echo(json.dumps(reply, indent=2))
            return
        for line in format_pilots_table(reply["pilots"]):
            typer.echo(line)

    def pilot_logs(
        self,
        pilot_id: str = typer.Argument(..., help="Pilot id (see gridpilot pilots)"),
        url: Optional[str] = URL_OPTION,
        token: Optional[str] = TOKEN_OPTION,
        token_file: Optional[Path] = TOKEN_FILE_OPTION,
    ) -> None:
        """Print the log a pilot uploaded."""
        client = self._connect(url, token, token_file)
        offset = 0
        while True:
            params = {"offset": offset, "limit": READ_BYTES}
            reply = self._call(client.request, "GET", f"/pilots/{pilot_id}/log", params=params)
            if not reply.content:
                return
            sys.stdout.buffer.write(reply.content)
            sys.stdout.buffer.flush()
            offset = int(reply.headers[LOG_NEXT_OFFSET_HEADER])


def add_tracking_commands(app: typer.Typer, connect: Connect, call: Call) -> None:
    commands = TrackingCommands(connect, call)
    app.command("jobs")(commands.jobs)
    app.command("reschedule")(commands.reschedule)
    app.command("logs")(commands.logs)
    app.command("peek")(commands.peek)
    app.command("pilots")(commands.pilots)
    app.command("pilot-logs")(commands.pilot_logs)


def format_pilots_table(items: Sequence[dict[str, Any]]) -> list[str]:
    header = f"{'PilotID':<24} {'Host':<16} {'Site':<14} {'Batch job':<18} {'Work':<5} LastSeen"
    lines = [header]
    for item in items:
        batch = f"{item['batch_system']}:{item['batch_job_id']}".strip(":") or "-"
        work = "yes" if item["accepting_work"] else "no"
        lines.append(
            f"{item['pilot_id']:<24} {item['hostname'][:16]:<16} {item['site'][:14]:<14} "
            f"{batch[:18]:<18} {work:<5} {item['last_seen'][:19]}  jobs: {len(item['job_ids'])}"
        )
        if not item["accepting_work"]:
            lines.append(f"{'':<24} refuses work: {item['refuse_reason'] or 'no reason given'}")
    return lines
