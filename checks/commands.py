"""What ``gridpilot checks run`` and ``gridpilot checks list`` do, short of printing and exiting.

``pilot/cli.py`` stays thin: it parses options, calls these and exits with the code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

from checks.api import CheckSource, CheckSpec
from checks.config import ChecksConfig, load_checks_config
from checks.discovery import discover
from checks.errors import ChecksError
from checks.report import NagiosState, format_json, format_table, nagios_exit_code, nagios_summary
from checks.runner import run_checks
from protocol import CheckReport

FORMATS = ("table", "json", "nagios")


class UsageError(ChecksError):
    """A bad command line: unknown format, unknown check name, unreadable config."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The text to print and the Nagios exit code."""

    text: str
    exit_code: int
    usage_error: bool = False
    """The text is an error about the command line or config (print it to stderr)."""


def load(config_path: Optional[Path]) -> ChecksConfig:
    """The config file's ``checks:`` section, or the defaults without a file."""
    if config_path is None:
        return ChecksConfig()
    try:
        return load_checks_config(config_path)
    except ChecksError as exc:
        raise UsageError(str(exc)) from exc


def select(specs: Sequence[CheckSpec], only: Sequence[str]) -> list[CheckSpec]:
    """The specs named in ``only`` (all when empty); UsageError naming unknown names."""
    if not only:
        return list(specs)
    known = {spec.name for spec in specs}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise UsageError(f"no check named {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [spec for spec in specs if spec.name in only]


def render(reports: Sequence[CheckReport], output_format: str) -> str:
    if output_format == "json":
        return format_json(reports)
    if output_format == "nagios":
        return nagios_summary(reports)
    return format_table(reports)


def run(
    config_path: Optional[Path],
    *,
    output_format: str,
    only: Sequence[str],
    workdir: Path,
    node_facts: Mapping[str, object],
) -> Outcome:
    """Discover, select, run and render; every usage problem is a Nagios UNKNOWN."""
    if output_format not in FORMATS:
        message = f"unknown format {output_format!r}: use {', '.join(FORMATS)}"
        return Outcome(message, int(NagiosState.UNKNOWN), usage_error=True)
    try:
        config = load(config_path)
        specs = select(discover(config), only)
    except UsageError as exc:
        return Outcome(str(exc), int(NagiosState.UNKNOWN), usage_error=True)
    reports = run_checks(
        specs,
        workdir=workdir,
        options=config.options,
        node_facts=dict(node_facts),
        search_path=config.search_path,
    )
    return Outcome(render(reports, output_format), nagios_exit_code(reports))


def origin_label(spec: CheckSpec) -> str:
    """Where a check comes from, as ``checks list`` shows it."""
    if spec.source is CheckSource.ENTRYPOINT:
        return f"entrypoint:{spec.origin}"
    if spec.source is CheckSource.CONFIG:
        return f"config ref {spec.ref}"
    if spec.source is CheckSource.SCRIPT:
        return f"script {spec.origin}"
    return f"builtin {spec.ref}"


def format_list(specs: Sequence[CheckSpec]) -> str:
    """One row per check: name, fatal, timeout, interval, origin (and why it cannot load)."""
    header = ("CHECK", "FATAL", "TIMEOUT", "INTERVAL", "SOURCE")
    rows = [
        (
            spec.name,
            "yes" if spec.fatal else "no",
            f"{spec.timeout_s:g}s",
            "-" if spec.interval_s is None else f"{spec.interval_s:g}s",
            origin_label(spec) + (f"  [cannot load: {spec.load_error}]" if spec.load_error else ""),
        )
        for spec in specs
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4]
        for row in [header, *rows]
    )


def list_checks(config_path: Optional[Path]) -> Outcome:
    try:
        specs = discover(load(config_path))
    except UsageError as exc:
        return Outcome(str(exc), int(NagiosState.UNKNOWN), usage_error=True)
    return Outcome(format_list(specs), 0)
