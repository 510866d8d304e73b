"""Node load: the 1- and 5-minute load averages per usable core.

A node already running more runnable processes than it has cores will run the next job
slowly; the check warns (and, with a high threshold, fails) so a site notices.
"""

from __future__ import annotations

import os
from pathlib import Path

from checks.api import CheckContext, CheckResult, check
from checks.builtin.thresholds import format_number, number_option
from protocol import CheckStatus

LOADAVG = Path("/proc/loadavg")


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """``/proc/loadavg`` ("0.52 0.58 0.59 1/467 12345") -> the three averages."""
    fields = text.split()
    if len(fields) < 3:
        raise ValueError(f"not a loadavg line: {text!r}")
    return float(fields[0]), float(fields[1]), float(fields[2])


def load_status(load_per_core: float, *, warn_above: float, fail_above: float) -> CheckStatus:
    """FAIL above ``fail_above`` runnable processes per core, WARN above ``warn_above``."""
    if load_per_core > fail_above:
        return CheckStatus.FAIL
    if load_per_core > warn_above:
        return CheckStatus.WARN
    return CheckStatus.OK


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@check("load", timeout_s=5.0, interval_s=300.0)
def load(ctx: CheckContext) -> CheckResult:
    warn_above = number_option(ctx.options, "warn_per_core", 1.5)
    fail_above = number_option(ctx.options, "fail_per_core", 4.0)
    try:
        load1, load5, load15 = parse_loadavg(Path(ctx.options.get("path", LOADAVG)).read_text())
    except (OSError, ValueError) as exc:
        return CheckResult(CheckStatus.UNKNOWN, f"cannot read the load average: {exc}")
    # The node's cores, not this slot's: load averages count the whole node.
    cores = int(number_option(ctx.options, "cores", os.cpu_count() or _cores(), minimum=1))
    # The 5-minute average: the 1-minute one jumps with every short burst.
    per_core = round(load5 / cores, 3)
    facts = {"load1": load1, "load5": load5, "load15": load15, "load_per_core": per_core}
    status = load_status(per_core, warn_above=warn_above, fail_above=fail_above)
    message = f"load {load1:g} {load5:g} {load15:g} on {cores} cores ({per_core:g} per core)"
    if status is not CheckStatus.OK:
        limit = fail_above if status is CheckStatus.FAIL else warn_above
        message += f", above {format_number(limit)} per core"
    return CheckResult(status, message, facts)
