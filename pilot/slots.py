"""How much of the node the pilot may fill: pure functions over check results."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Optional

from pilot.protocol import CheckReport


@dataclasses.dataclass(frozen=True)
class NodeCapacity:
    cores: int
    memory_mb: int
    """0 when unknown: then memory does not limit matching."""


def _fact(reports: Sequence[CheckReport], name: str) -> Any:
    for report in reports:
        if name in report.facts:
            return report.facts[name]
    return None


def capacity_from_checks(
    reports: Sequence[CheckReport],
    configured_cores: Optional[int] = None,
    configured_memory_mb: Optional[int] = None,
) -> NodeCapacity:
    """The configured figures win; otherwise what the cores and memory checks measured."""
    cores = configured_cores if configured_cores is not None else _fact(reports, "cores")
    memory_mb = (
        configured_memory_mb if configured_memory_mb is not None else _fact(reports, "memory_mb")
    )
    return NodeCapacity(cores=max(1, int(cores or 1)), memory_mb=max(0, int(memory_mb or 0)))
