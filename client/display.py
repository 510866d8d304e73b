"""How jobs are shown to people: DIRAC's layouts, shared by the CLI and the demo."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from protocol import HistoryEntry, JobInfo


def format_status(info: JobInfo) -> str:
    """DIRAC's ``dirac-wms-job-status`` line."""
    return (
        f"JobID={info.job_id} Status={info.status.value}; "
        f"MinorStatus={info.minor_status}; Site={info.site};"
    )


def format_history(history: Sequence[HistoryEntry]) -> list[str]:
    """DIRAC's ``dirac-wms-job-logging-info`` table, oldest first."""
    header = ("Status", "MinorStatus", "ApplicationStatus", "DateTime (UTC)")
    lines = [f"{header[0]:<13} {header[1]:<36} {header[2]:<22} {header[3]:<27} Source"]
    for entry in history:
        lines.append(
            f"{entry.status.value:<13} {entry.minor_status or 'Unknown':<36} "
            f"{entry.application_status or 'Unknown':<22} {_when(entry.at):<27} {entry.source}"
        )
    return lines


def _when(iso_time: str) -> str:
    try:
        moment = datetime.fromisoformat(iso_time)
    except ValueError:
        return iso_time
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def format_attributes(info: JobInfo) -> dict[str, Any]:
    """A job's attributes under DIRAC's names (``dirac-wms-job-attributes``)."""
    return {
        "JobID": info.job_id,
        "JobName": info.job_name,
        "JobGroup": info.job_group,
        "Owner": info.owner,
        "OwnerGroup": info.owner_group,
        "VO": info.vo,
        "Status": info.status.value,
        "MinorStatus": info.minor_status,
        "ApplicationStatus": info.application_status,
        "Site": info.site,
        "SubmissionTime": info.created_at,
        "LastUpdateTime": info.updated_at,
        "RescheduleCounter": info.reschedule_count,
    }


def format_parameters(info: JobInfo) -> dict[str, Any]:
    """What the pilot reported of a job's run, under DIRAC's parameter names where DIRAC
    has one (``dirac-wms-job-parameters``)."""
    found: dict[str, Any] = {"JobID": info.job_id, "PilotReference": info.pilot_id or "-"}
    if info.exit_code is not None:
        found["ExitCode"] = info.exit_code
    if info.cpu_s is not None:
        found["TotalCPUTime(s)"] = round(info.cpu_s, 2)
    if info.max_rss_bytes is not None:
        found["MaxRSS(MB)"] = round(info.max_rss_bytes / 2**20, 1)
    if info.cores is not None:
        found["Cores"] = info.cores
    if info.gpus:
        found["GPUs"] = info.gpus
    if info.cpu_efficiency is not None:
        found["CPUEfficiency(%)"] = round(100 * info.cpu_efficiency, 1)
    if info.timings_s:
        found["WallClockTime(s)"] = round(sum(info.timings_s.values()), 2)
        for phase, seconds in info.timings_s.items():
            found[f"Timing.{phase}(s)"] = round(seconds, 3)
    if info.output_sandbox:
        found["OutputSandbox"] = info.output_sandbox
    return found
