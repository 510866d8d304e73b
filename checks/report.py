"""Check reports for people and monitoring: a table, JSON, Nagios exit code and summary."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence

from protocol import CheckReport, CheckStatus


class NagiosState(enum.IntEnum):
    """Nagios plugin exit codes."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


_STATE_OF = {
    CheckStatus.OK: NagiosState.OK,
    CheckStatus.SKIP: NagiosState.OK,
    CheckStatus.WARN: NagiosState.WARNING,
    CheckStatus.FAIL: NagiosState.CRITICAL,
    CheckStatus.TIMEOUT: NagiosState.CRITICAL,
    CheckStatus.UNKNOWN: NagiosState.UNKNOWN,
}

# Worst first. A definite failure outranks "could not tell", which outranks a warning:
# an UNKNOWN probe must never hide a CRITICAL one from the site's monitoring.
_SEVERITY = (NagiosState.CRITICAL, NagiosState.UNKNOWN, NagiosState.WARNING, NagiosState.OK)


def nagios_state(reports: Sequence[CheckReport]) -> NagiosState:
    """The worst state among ``reports``; UNKNOWN when there is nothing to judge."""
    if not reports:
        return NagiosState.UNKNOWN
    states = {_STATE_OF[report.status] for report in reports}
    return next(state for state in _SEVERITY if state in states)


def nagios_exit_code(reports: Sequence[CheckReport]) -> int:
    """0 ok (and skip), 1 warn, 2 fail or timeout, 3 unknown; the worst state wins."""
    return int(nagios_state(reports))


def nagios_summary(reports: Sequence[CheckReport]) -> str:
    """One Nagios plugin line: state, counts, what is wrong, and per-check durations."""
    state = nagios_state(reports)
    counts = ", ".join(
        f"{sum(1 for r in reports if r.status is status)} {status.value}"
        for status in CheckStatus
        if any(r.status is status for r in reports)
    )
    problems = [
        f"{r.name} {r.status.value}: {_one_line(r.message)}"
        for r in reports
        if _STATE_OF[r.status] is not NagiosState.OK
    ]
    text = f"CHECKS {state.name} - {counts or 'no checks run'}"
    if problems:
        text += "; " + "; ".join(problems)
    perfdata = " ".join(f"'{_perf_label(r.name)}'={r.duration_s:.3f}s" for r in reports)
    # "|" separates text from performance data in Nagios output.
    return f"{text.replace('|', '/')} | {perfdata}" if perfdata else text.replace("|", "/")


def format_table(reports: Sequence[CheckReport]) -> str:
    """A plain-text table: check, status (``*`` when fatal), duration, message."""
    header = ("CHECK", "STATUS", "TIME", "MESSAGE")
    rows = [
        (
            r.name,
            r.status.value.upper() + ("*" if r.fatal else ""),
            f"{r.duration_s:.2f}s",
            _one_line(r.message),
        )
        for r in reports
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3]
        for row in [header, *rows]
    ]
    if any(r.fatal for r in reports):
        lines.append("* fatal: the pilot takes no work while this check fails")
    return "\n".join(line.rstrip() for line in lines)


def format_json(reports: Sequence[CheckReport]) -> str:
    """Reports as a JSON document: ``{"checks": [...], "nagios_exit_code": N, "summary": s}``."""
    document = {
        "checks": [report.to_dict() for report in reports],
        "nagios_exit_code": nagios_exit_code(reports),
        "summary": nagios_summary(reports),
    }
    return json.dumps(document, indent=2, sort_keys=False)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _perf_label(name: str) -> str:
    return name.replace("'", "").replace("=", "_")
