"""Outbound reach of the coordinator: its ``/health`` answers from this node.

Worker nodes often sit behind firewalls or proxies; a pilot that cannot reach its
coordinator should say so before anything else. Skipped when no URL is known (``gridpilot
checks run`` without one); the URL is option ``url`` or the pilot's ``coordinator_url``.
"""

from __future__ import annotations

from checks.api import CheckContext, CheckResult, check
from checks.builtin.health_probe import HealthProbe, coordinator_url, probe_coordinator
from checks.builtin.thresholds import number_option
from protocol import CheckStatus


def reach_result(probe: HealthProbe, *, warn_round_trip_s: float) -> CheckResult:
    """FAIL without an answer or with a 5xx; WARN when slow; OK otherwise."""
    facts = {"coordinator_round_trip_s": round(probe.round_trip_s, 4)}
    if probe.status_code is None:
        return CheckResult(CheckStatus.FAIL, f"{probe.url} unreachable: {probe.error}", facts)
    facts["coordinator_http_status"] = probe.status_code
    if probe.status_code >= 500:
        return CheckResult(
            CheckStatus.FAIL, f"{probe.url} answered HTTP {probe.status_code}", facts
        )
    if probe.status_code >= 400:
        return CheckResult(
            CheckStatus.WARN, f"{probe.url} answered HTTP {probe.status_code}", facts
        )
    message = f"{probe.url} answered in {probe.round_trip_s * 1000:.0f} ms"
    if probe.round_trip_s > warn_round_trip_s:
        return CheckResult(
            CheckStatus.WARN, message + f", slower than {warn_round_trip_s:g} s", facts
        )
    return CheckResult(CheckStatus.OK, message, facts)


@check("coordinator", timeout_s=15.0, interval_s=600.0)
def coordinator(ctx: CheckContext) -> CheckResult:
    url = coordinator_url(ctx.options, ctx.node_facts)
    if not url:
        return CheckResult(CheckStatus.SKIP, "no coordinator URL (option url)")
    timeout_s = number_option(ctx.options, "request_timeout_s", 10.0)
    warn_s = number_option(ctx.options, "warn_round_trip_s", 2.0)
    probe = probe_coordinator(ctx.options, ctx.node_facts, url, timeout_s)
    return reach_result(probe, warn_round_trip_s=warn_s)
