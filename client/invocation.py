"""What one run of ``gridpilot`` carries from the root command to the sub-command: the
connection options, the one client, the output mode, and the jobs that failed.

Commands that talk to the coordinator are marked with :func:`uses_coordinator`; the
``gridpilot`` app gives each of them a copy of the connection options, so those can be
written after the sub-command too.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

import typer

from client.connection import ConnectionFactory, ConnectionOptions
from client.errors import ClientError, Refused
from client.jobids import GROUP_HELP, ID_FILE_HELP, select_job_ids

if TYPE_CHECKING:
    from client.api import UserClient

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

CONNECTION_MARK = "__gridpilot_connection__"
JSON_OPTION = typer.Option(False, "--json", help="Machine-readable JSON output")
JOB_IDS_ARGUMENT = typer.Argument(None, help="Job ids (also 1,2,3)", show_default=False)
ID_FILE_OPTION = typer.Option(None, "--file", "-f", help=ID_FILE_HELP)
GROUP_OPTION = typer.Option(None, "--group", "-g", help=GROUP_HELP)


class PartialFailure(ClientError):
    """Some of the jobs a command named failed; each was reported as it failed."""


def uses_coordinator(func: F) -> F:
    setattr(func, CONNECTION_MARK, True)
    return func


@dataclasses.dataclass
class Invocation:
    options: ConnectionOptions
    connections: ConnectionFactory
    verbose: bool = False
    json_output: bool = False
    failed: list[int] = dataclasses.field(default_factory=list)

    def client(self) -> UserClient:
        return self.connections.client()

    def job_ids(
        self,
        words: Optional[list[str]],
        id_file: Optional[Path],
        group: Optional[str],
        statuses: Optional[str] = None,
    ) -> list[int]:
        client = self.client() if group else None
        return select_job_ids(words or [], id_file, group, client, statuses)

    def each_job(self, job_ids: list[int], action: Callable[[int], T]) -> list[tuple[int, T]]:
        """Run ``action`` for every job; a refusal is reported and the next job goes on
        (as ``dirac-wms-*`` commands do); an unreachable coordinator or a refused token
        stops everything."""
        done: list[tuple[int, T]] = []
        for job_id in job_ids:
            try:
                done.append((job_id, action(job_id)))
            except Refused as exc:
                self.job_failed(job_id, exc)
        return done

    def job_failed(self, job_id: int, error: ClientError) -> None:
        self.failed.append(job_id)
        say_error(error, self, job=job_id)

    def finish(self) -> None:
        """Exit 1 when some job failed (each already reported)."""
        if self.failed:
            ids = ", ".join(str(job_id) for job_id in self.failed)
            raise PartialFailure(f"not done for job(s) {ids}", details={"job_ids": self.failed})


def invocation(ctx: typer.Context) -> Invocation:
    found = ctx.find_object(Invocation)
    if found is None:  # pragma: no cover - the root callback always makes one
        raise RuntimeError("gridpilot's root callback did not run")
    return found


def error_record(error: ClientError, job: Optional[int] = None) -> dict[str, Any]:
    record: dict[str, Any] = {"message": error.message, "details": error.details}
    if isinstance(error, Refused):
        record.update(code=error.code, http_status=error.status)
    if job is not None:
        record["job_id"] = job
    return record


def say_error(error: ClientError, run: Optional[Invocation], job: Optional[int] = None) -> None:
    """One line in words on stderr; the details with ``-v``; JSON with ``--json``."""
    if run is not None and run.json_output:
        typer.echo(json.dumps({"error": error_record(error, job)}), err=True)
        return
    message = error.message
    if job is not None and f"job {job}" not in message:
        message = f"job {job}: {message}"
    typer.echo(f"gridpilot: {message}", err=True)
    if run is not None and run.verbose and error.details:
        typer.echo(f"  details: {json.dumps(error.details, sort_keys=True)}", err=True)


def selected_jobs(
    ctx: typer.Context,
    words: Optional[list[str]],
    id_file: Optional[Path],
    group: Optional[str],
    as_json: bool = False,
    statuses: Optional[str] = None,
) -> tuple[Invocation, list[int]]:
    """The run and the job ids a job command acts on."""
    run = invocation(ctx)
    run.json_output = as_json
    return run, run.job_ids(words, id_file, group, statuses)
