"""How jobs are shown to people: DIRAC's layouts, shared by the CLI and the demo."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

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
