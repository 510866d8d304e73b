"""What a pilot tells the coordinator about itself: pure functions over check results.

The node facts come from the checks; the site and CE from the configuration, else from the
batch environment (``SITE_NAME``/``GLIDEIN_Site``; ARC's job URL, Slurm's cluster name, the
PBS server); the batch system and its job id from the batch environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from checks.builtin.batch_slot import BatchSlot
from pilot.config import PilotConfig
from pilot.node import ce_from_env, hostname, site_from_env
from pilot.slots import NodeCapacity
from protocol import (
    SLOT_POLICIES,
    CheckReport,
    CheckStatus,
    MatchRequest,
    PilotRegistration,
    __version__,
)

ANY_SITE = "ANY"
BAD_STATUSES = frozenset({CheckStatus.FAIL, CheckStatus.TIMEOUT})


def fatal_failures(reports: Sequence[CheckReport]) -> list[CheckReport]:
    return [r for r in reports if r.fatal and r.status in BAD_STATUSES]


def refuse_reason(failed: Sequence[CheckReport]) -> str:
    """One line naming every failed fatal check and what it said."""
    return "; ".join(f"fatal check {r.name} failed: {r.message}" for r in failed)


def merged_tags(reports: Sequence[CheckReport]) -> list[str]:
    tags: list[str] = []
    for report in reports:
        for tag in report.tags:
            if tag not in tags:
                tags.append(tag)
    return tags


def merged_facts(reports: Sequence[CheckReport]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for report in reports:
        facts.update(report.facts)
    return facts


def site_and_ce(config: PilotConfig, env: Mapping[str, str]) -> tuple[str, str]:
    site = config.site if config.site and config.site != ANY_SITE else site_from_env(env)
    return site or ANY_SITE, config.ce or ce_from_env(env)


def build_registration(
    config: PilotConfig,
    env: Mapping[str, str],
    reports: Sequence[CheckReport],
    slot: BatchSlot,
    capacity: NodeCapacity,
    time_left_s: Optional[int],
) -> PilotRegistration:
    facts = merged_facts(reports)
    failed = fatal_failures(reports)
    site, ce = site_and_ce(config, env)
    return PilotRegistration(
        hostname=hostname(),
        pilot_version=__version__,
        site=site,
        ce=ce,
        batch_system=slot.batch_system,
        batch_job_id=slot.batch_job_id,
        cores=capacity.cores,
        memory_mb=capacity.memory_mb,
        disk_free_mb=_int_fact(facts, "disk_free_mb"),
        platform=str(facts.get("platform", "")),
        python_version=str(facts.get("python_version", "")),
        time_left_s=time_left_s,
        tags=merged_tags(reports),
        facts=facts,
        checks=list(reports),
        accepting_work=not failed,
        refuse_reason=refuse_reason(failed),
    )


def slot_end_epoch_s(
    configured_time_left_s: Optional[int],
    slot: BatchSlot,
    reports: Sequence[CheckReport],
    now_epoch_s: float,
) -> Optional[float]:
    """When the batch slot ends: configured, else the batch system's, else a check's fact.

    The ``time_left_s`` fact comes from a check such as ``timeleft``, which reads the batch
    systems and job features files the pilot itself does not.
    """
    if configured_time_left_s is not None:
        return now_epoch_s + configured_time_left_s
    if slot.end_epoch_s is not None:
        return slot.end_epoch_s
    for report in reports:
        value = report.facts.get("time_left_s")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return now_epoch_s + float(value)
    return None


def match_request(
    registration: PilotRegistration,
    free: NodeCapacity,
    time_left_s: Optional[int],
    *,
    slot_policy: str = "",
    min_cores: int = 0,
) -> MatchRequest:
    """Ask for as many jobs as there are free cores, fitting what is free now (its free
    GPUs too, when the pilot counted them)."""
    gpus = None if free.gpus is None else [gpu.info for gpu in free.gpus]
    return MatchRequest(
        n=free.cores,
        cores_free=free.cores,
        memory_free_mb=free.memory_mb,
        time_left_s=time_left_s,
        site=registration.site,
        platform=registration.platform,
        tags=list(registration.tags),
        gpus_free=gpus,
        slot_policy=slot_policy if slot_policy in SLOT_POLICIES else "",
        min_cores=min_cores,
    )


def _int_fact(facts: Mapping[str, Any], name: str) -> int:
    try:
        return int(facts.get(name) or 0)
    except (TypeError, ValueError):
        return 0
