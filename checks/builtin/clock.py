"""Clock offset against the coordinator's HTTP ``Date`` header.

Tokens carry expiry times and logs carry timestamps: a node whose clock is minutes off
gets its requests refused and its logs misordered. ``Date`` has one-second resolution,
so offsets below about a second are noise; defaults warn at 10 s and fail at 120 s.
"""

from __future__ import annotations

import email.utils
from typing import Optional

from checks.api import CheckContext, CheckResult, check
from checks.builtin.health_probe import coordinator_url, probe_coordinator
from checks.builtin.thresholds import format_number, number_option
from protocol import CheckStatus


def clock_offset_s(date_header: str, sent_at: float, received_at: float) -> float:
    """Server time minus local time, in seconds (positive: the local clock is behind).

    The server stamped ``Date`` somewhere between sending and receiving, truncated to
    the second, so compare its mid-second against the request's midpoint.
    """
    parsed = email.utils.parsedate_to_datetime(date_header)
    if parsed is None or parsed.tzinfo is None:
        raise ValueError(f"Date header {date_header!r} has no time zone")
    server_s = parsed.timestamp() + 0.5
    return server_s - (sent_at + received_at) / 2


def clock_status(offset_s: float, *, warn_s: float, fail_s: float) -> CheckStatus:
    if abs(offset_s) > fail_s:
        return CheckStatus.FAIL
    if abs(offset_s) > warn_s:
        return CheckStatus.WARN
    return CheckStatus.OK


def _offset(date_header: Optional[str], sent_at: float, received_at: float) -> Optional[float]:
    if not date_header:
        return None
    try:
        return clock_offset_s(date_header, sent_at, received_at)
    except (TypeError, ValueError):
        return None


@check("clock", timeout_s=15.0, interval_s=3600.0)
def clock(ctx: CheckContext) -> CheckResult:
    url = coordinator_url(ctx.options, ctx.node_facts)
    if not url:
        return CheckResult(CheckStatus.SKIP, "no coordinator URL to compare clocks with")
    warn_s = number_option(ctx.options, "warn_offset_s", 10.0)
    fail_s = number_option(ctx.options, "fail_offset_s", 120.0)
    timeout_s = number_option(ctx.options, "request_timeout_s", 10.0)
    probe = probe_coordinator(ctx.options, ctx.node_facts, url, timeout_s)
    offset = _offset(probe.date_header, probe.sent_at, probe.received_at)
    if offset is None:
        why = probe.error or f"no usable Date header ({probe.date_header!r})"
        return CheckResult(CheckStatus.UNKNOWN, f"cannot compare clocks with {probe.url}: {why}")
    facts = {"clock_offset_s": round(offset, 3)}
    status = clock_status(offset, warn_s=warn_s, fail_s=fail_s)
    message = f"clock {abs(offset):.1f} s {'behind' if offset > 0 else 'ahead of'} the coordinator"
    if status is not CheckStatus.OK:
        limit = fail_s if status is CheckStatus.FAIL else warn_s
        message += f", more than {format_number(limit)} s"
    return CheckResult(status, message, facts)
