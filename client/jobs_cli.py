"""Users' job commands, as DIRAC's ``dirac-wms-job-*`` do them: submit, status,
logging-info, get-output, kill, delete, reschedule, get-jdl, parameters, attributes, and
``jdl`` (a job file read locally, no coordinator needed).

Every command on jobs takes many ids (``1 2 3`` or ``1,2,3``), ``-f FILE`` and
``-g JOBGROUP``; a job that fails is reported and the others go on; the exit code is then 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from client.display import format_attributes, format_history, format_parameters, format_status
from client.errors import ClientError, InputError
from client.invocation import (
    GROUP_OPTION,
    ID_FILE_OPTION,
    JOB_IDS_ARGUMENT,
    JSON_OPTION,
    Invocation,
    invocation,
    say_error,
    selected_jobs,
    uses_coordinator,
)
from protocol import FINAL_STATUSES, ErrorCode, JobInfo, JobStatus

OVER = frozenset({*FINAL_STATUSES, JobStatus.COMPLETED, JobStatus.DELETED})
"""A job in these states can no longer be killed: a kill leaves it as it is."""
FORMAT_OPTION = typer.Option(None, "--format", help="jdl, json or yaml (default: by suffix)")


@uses_coordinator
def submit(
    ctx: typer.Context,
    files: list[Path] = typer.Argument(..., help="JDL, JSON or YAML job descriptions"),
    fmt: Optional[str] = FORMAT_OPTION,
    ids_to: Optional[Path] = typer.Option(
        None, "--file", "-f", help="Append the new job ids to this file (as dirac-wms-job-submit)"
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Submit jobs; print "JobID = N" per file ("JobID = [4, 5, 6]" for a parametric one).

    Every file is read and checked first: if one is wrong, none is submitted.
    """
    from client.submission import prepare, submit_prepared

    run = invocation(ctx)
    run.json_output = as_json
    prepared, problems = [], []
    for path in files:
        try:
            prepared.append(prepare(path, fmt))
        except InputError as exc:
            problems.append(exc)
    if problems:
        for problem in problems:
            say_error(problem, run)
        raise InputError(
            f"nothing submitted: {len(problems)} of {len(files)} file(s) with errors",
            details={"files": [str(path) for path in files]},
        )
    client = run.client()
    for index, item in enumerate(prepared):
        try:
            reply = submit_prepared(client, item)
        except ClientError:
            _say_what_was_left(prepared, index)
            raise
        _write_ids(ids_to, reply.job_ids)
        if as_json:
            for job_id in reply.job_ids:
                typer.echo(json.dumps({"job_id": job_id, "file": str(item.path)}))
        elif len(reply.job_ids) == 1 and item.job_count == 1:
            typer.echo(f"JobID = {reply.job_ids[0]}")
        else:
            typer.echo(f"JobID = {reply.job_ids}")


def _say_what_was_left(prepared: list[Any], failed_at: int) -> None:
    done = [str(item.path) for item in prepared[:failed_at]]
    left = [str(item.path) for item in prepared[failed_at:]]
    if done:
        typer.echo(f"gridpilot: submitted: {', '.join(done)}", err=True)
    typer.echo(f"gridpilot: not submitted: {', '.join(left)}", err=True)


def _write_ids(path: Optional[Path], job_ids: list[int]) -> None:
    if path is None:
        return
    try:
        with open(path, "a", encoding="utf-8") as out:
            out.writelines(f"{job_id}\n" for job_id in job_ids)
    except OSError as exc:
        raise InputError(f"cannot write the job ids to {path}: {exc.strerror or exc}") from exc


@uses_coordinator
def status(
    ctx: typer.Context,
    job_ids: Optional[list[str]] = JOB_IDS_ARGUMENT,
    id_file: Optional[Path] = ID_FILE_OPTION,
    group: Optional[str] = GROUP_OPTION,
    full: bool = typer.Option(
        False, "--full", help="Also the attributes and what the pilot reported (CPU efficiency)"
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show jobs' status in DIRAC's layout (dirac-wms-job-status)."""
    run, ids = selected_jobs(ctx, job_ids, id_file, group, as_json)
    if full and not as_json:
        _status_full(run, ids)
        return
    found = {info.job_id: info for info in run.client().jobs(ids)}
    infos = []
    for job_id in ids:
        if job_id in found:
            infos.append(found[job_id])
        else:
            run.job_failed(job_id, _no_job(job_id))
    if as_json:
        typer.echo(json.dumps([info.to_dict() for info in infos], indent=2))
    else:
        for info in infos:
            typer.echo(format_status(info))
    run.finish()


def _status_full(run: Invocation, ids: list[int]) -> None:
    """Per job: the status line, then its attributes and parameters, name : value."""
    for index, (_job_id, info) in enumerate(run.each_job(ids, run.client().job)):
        if index:
            typer.echo("")
        typer.echo(format_status(info))
        fields = {**format_attributes(info), **format_parameters(info)}
        width = max(len(name) for name in fields)
        for name, value in fields.items():
            typer.echo(f"  {name:<{width}} : {value}")
    run.finish()


def _no_job(job_id: int) -> Any:
    from client.errors import Refused

    return Refused(
        f"no job {job_id}", code=ErrorCode.NOT_FOUND.value, status=404, details={"job_id": job_id}
    )


@uses_coordinator
def logging_info(
    ctx: typer.Context,
    job_ids: Optional[list[str]] = JOB_IDS_ARGUMENT,
    id_file: Optional[Path] = ID_FILE_OPTION,
    group: Optional[str] = GROUP_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show jobs' status history: status, minor status, application status, time, source."""
    run, ids = selected_jobs(ctx, job_ids, id_file, group, as_json)
    histories = run.each_job(ids, run.client().history)
    if as_json:
        result = {
            str(job_id): [entry.to_dict() for entry in history] for job_id, history in histories
        }
        typer.echo(
            json.dumps(result if len(ids) > 1 else next(iter(result.values()), []), indent=2)
        )
    else:
        for job_id, history in histories:
            if len(ids) > 1:
                typer.echo(f"JobID = {job_id}")
            for line in format_history(history):
                typer.echo(line)
    run.finish()


@uses_coordinator
def get_output(
    ctx: typer.Context,
    job_ids: Optional[list[str]] = JOB_IDS_ARGUMENT,
    id_file: Optional[Path] = ID_FILE_OPTION,
    group: Optional[str] = typer.Option(
        None, "--group", "-g", help="Also the Done and Failed jobs of this JobGroup"
    ),
    out_dir: Path = typer.Option(Path("."), "--dir", "-D", help="Write to DIR/<job id>/"),
) -> None:
    """Download jobs' output sandboxes into DIR/<job id>/, checksum verified."""
    from client.output import check_output_dir, retrieve_output

    check_output_dir(out_dir)
    statuses = "Done,Failed" if group else None
    run, ids = selected_jobs(ctx, job_ids, id_file, group, statuses=statuses)
    client = run.client()
    for _job_id, (target, names) in run.each_job(
        ids, lambda job_id: retrieve_output(client, job_id, out_dir)
    ):
        typer.echo(f"Job output sandbox retrieved in {target}/ ({len(names)} file(s))")
    run.finish()


@uses_coordinator
def kill(
    ctx: typer.Context,
    job_ids: Optional[list[str]] = JOB_IDS_ARGUMENT,
    id_file: Optional[Path] = ID_FILE_OPTION,
    group: Optional[str] = GROUP_OPTION,
) -> None:
    """Kill jobs: waiting ones at once, running ones through their pilot.

    As DIRAC: a job already over (Done, Failed, Killed) is left as it is and said so; that
    is not an error.
    """
    run, ids = selected_jobs(ctx, job_ids, id_file, group)
    for job_id, info in run.each_job(ids, run.client().kill):
        _say_killed(job_id, info)
    run.finish()


def _say_killed(job_id: int, info: JobInfo) -> None:
    if info.status is JobStatus.KILLED or info.status not in OVER:
        typer.echo(f"Killed job {job_id}")
    else:
        typer.echo(f"gridpilot: job {job_id} is already {info.status.value}: not killed", err=True)


@uses_coordinator
def delete(
    ctx: typer.Context,
    job_ids: Optional[list[str]] = JOB_IDS_ARGUMENT,
    id_file: Optional[Path] = ID_FILE_OPTION,
    group: Optional[str] = GROUP_OPTION,
) -> None:
    """Delete jobs that are over or still waiting (a running job must be killed first)."""
    run, ids = selected_jobs(ctx, job_ids, id_file, group)
    for job_id, _info in run.each_job(ids, run.client().delete):
        typer.echo(f"Deleted job {job_id}")
    run.finish()


@uses_coordinator
def reschedule(
    ctx: typer.Context,
    job_ids: Optional[list[str]] = JOB_IDS_ARGUMENT,
    id_file: Optional[Path] = ID_FILE_OPTION,
    group: Optional[str] = GROUP_OPTION,
    reset: bool = typer.Option(False, "--reset", help="Zero the reschedule counter first"),
) -> None:
    """Run jobs again from scratch (dirac-wms-job-reschedule)."""
    run, ids = selected_jobs(ctx, job_ids, id_file, group)
    client = run.client()
    for job_id, _info in run.each_job(ids, lambda job_id: client.reschedule(job_id, reset=reset)):
        typer.echo(f"Rescheduled job {job_id}")
    run.finish()


@uses_coordinator
def get_jdl(
    ctx: typer.Context,
    job_ids: Optional[list[str]] = JOB_IDS_ARGUMENT,
    id_file: Optional[Path] = ID_FILE_OPTION,
    group: Optional[str] = GROUP_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print jobs' descriptions as the coordinator keeps them (dirac-wms-job-get-jdl)."""
    from coordinator.errors import CoordinatorError
    from coordinator.logic.jdl import to_jdl

    run, ids = selected_jobs(ctx, job_ids, id_file, group, as_json)
    for job_id, info in run.each_job(ids, run.client().job):
        if as_json:
            typer.echo(json.dumps({"job_id": job_id, "description": info.description}, indent=2))
            continue
        try:
            typer.echo(to_jdl(info.description))
        except CoordinatorError:  # a JSON/YAML job with a value JDL cannot write
            typer.echo(json.dumps(info.description, indent=2))
    run.finish()


@uses_coordinator
def parameters(
    ctx: typer.Context,
    job_ids: Optional[list[str]] = JOB_IDS_ARGUMENT,
    id_file: Optional[Path] = ID_FILE_OPTION,
    group: Optional[str] = GROUP_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show what the pilot reported of jobs' runs (dirac-wms-job-parameters): pilot, exit
    code, CPU time, peak memory, phase timings."""
    _show_job_fields(ctx, job_ids, id_file, group, as_json, format_parameters)


@uses_coordinator
def attributes(
    ctx: typer.Context,
    job_ids: Optional[list[str]] = JOB_IDS_ARGUMENT,
    id_file: Optional[Path] = ID_FILE_OPTION,
    group: Optional[str] = GROUP_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show jobs' attributes (dirac-wms-job-attributes): owner, group, status, site, times."""
    _show_job_fields(ctx, job_ids, id_file, group, as_json, format_attributes)


def _show_job_fields(
    ctx: typer.Context,
    job_ids: Optional[list[str]],
    id_file: Optional[Path],
    group: Optional[str],
    as_json: bool,
    fields: Any,
) -> None:
    run, ids = selected_jobs(ctx, job_ids, id_file, group, as_json)
    found = run.each_job(ids, run.client().job)
    if as_json:
        typer.echo(json.dumps([fields(info) for _job_id, info in found], indent=2))
    else:
        for index, (_job_id, info) in enumerate(found):
            if index:
                typer.echo("")
            width = max(len(name) for name in fields(info))
            for name, value in fields(info).items():
                typer.echo(f"{name:<{width}} : {value}")
    run.finish()


def jdl(
    path: Path = typer.Argument(..., help="A JDL (or .json/.yaml) job description"),
    expand: bool = typer.Option(False, "--expand", help="Print the jobs a parametric JDL gives"),
    fmt: Optional[str] = FORMAT_OPTION,
) -> None:
    """Read and check a job description locally; print it as JSON (no coordinator needed)."""
    from client.submission import expand_file, parse_file

    _text, _kind, description = parse_file(path, fmt)
    jobs = expand_file(path, description)
    typer.echo(json.dumps(jobs if expand else description, indent=2))


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(status)
    app.command("logging-info")(logging_info)
    app.command("get-output")(get_output)
    app.command()(kill)
    app.command()(delete)
    app.command()(reschedule)
    app.command("get-jdl")(get_jdl)
    app.command()(parameters)
    app.command()(attributes)
    app.command()(jdl)
