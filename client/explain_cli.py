"""Why jobs wait and why pilots get nothing: ``gridpilot explain N`` and the lines of
``gridpilot pilots --why PILOT_ID``, in DIRAC's ``Name=value;`` manner (``--json``: the
coordinator's answer as is)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from client.invocation import (
    GROUP_OPTION,
    ID_FILE_OPTION,
    JOB_IDS_ARGUMENT,
    JSON_OPTION,
    selected_jobs,
    uses_coordinator,
)
from protocol import JobExplanation, PilotExplanation


def _minutes(seconds: int) -> str:
    return f"{seconds / 60:g} minutes"


def format_job_explanation(found: JobExplanation) -> list[str]:
    lines = [f"JobID={found.job_id} Status={found.status.value};", f"Reason: {found.summary}"]
    if not found.requirements:
        return lines
    seen = found.pilots_seen
    lines.append(
        f"Pilots seen in the last {_minutes(found.interval_s)}: {seen}, "
        f"meeting every requirement: {found.pilots_meeting_all}"
    )
    width = max(len(check.wanted) for check in found.requirements)
    width = min(max(width, len("Wanted")), 48)
    lines.append(f"  {'Requirement':<13} {'Wanted':<{width}} Pilots")
    for check in found.requirements:
        mark = "  excludes all" if check.excludes_all else ""
        wanted = check.wanted or "-"
        lines.append(
            f"  {check.name:<13} {wanted[:width]:<{width}} {check.pilots_meeting}/{seen}{mark}"
        )
    if found.task_queue_id is not None:
        limit = found.queue_count_limit
        past = "+" if limit and (found.queue_position or 0) > limit else ""
        lines.append(
            f"TaskQueue={found.task_queue_id}; Position={found.queue_position}{past} "
            f"of {found.queue_waiting}{'+' if limit else ''} waiting;"
        )
    share = found.fair_share
    if share is not None:
        lines.append(
            f"FairShare: Owner={share.owner}; Group={share.group or '-'}; "
            f"Position={share.position} of {share.owners}; Usage={share.usage:g} cores; "
            f"Weight={share.weight:g};"
        )
    lines.append(f"LastPilotSeen={found.last_pilot_at or 'never'};")
    return lines


def format_pilot_explanation(found: PilotExplanation) -> list[str]:
    lines = [
        f"PilotID={found.pilot_id} Cause={found.cause}; "
        f"LastMatch={found.last_match_at or 'never'}; Jobs={found.last_match_jobs};",
        f"Reason: {found.summary}",
    ]
    if found.nearest:
        lines.append(f"Nearest task queues (of {found.queues} with jobs waiting):")
        for miss in found.nearest:
            lines.append(
                f"  TaskQueue={miss.task_queue_id} Owner={miss.owner} fails: "
                + ", ".join(miss.failed)
            )
            lines.extend(f"      {detail}" for detail in miss.details)
    return lines


@uses_coordinator
def explain(
    ctx: typer.Context,
    job_ids: Optional[list[str]] = JOB_IDS_ARGUMENT,
    id_file: Optional[Path] = ID_FILE_OPTION,
    group: Optional[str] = GROUP_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Why jobs wait: each requirement against the pilots seen lately, the one that alone
    excludes them all, the job's place in its task queue and its owner's fair share."""
    run, ids = selected_jobs(ctx, job_ids, id_file, group, as_json)
    found = run.each_job(ids, run.client().explain_job)
    if as_json:
        typer.echo(json.dumps([answer.to_dict() for _job_id, answer in found], indent=2))
    else:
        for index, (_job_id, answer) in enumerate(found):
            if index:
                typer.echo("")
            for line in format_job_explanation(answer):
                typer.echo(line)
    run.finish()


def register(app: typer.Typer) -> None:
    app.command()(explain)
