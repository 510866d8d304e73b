"""The pilot's side of containers: the site's settings, and which runtimes it offers.

The pilot offers (``MatchRequest.container_runtimes`` and the runtime tags) the container
runtimes the site allows, the node has and the ``containers`` check saw working. A runtime
that then fails on its own (a job ends ``Container Runtime Failed``) is not offered again
by this pilot, and not used for later jobs: the next container job goes to another pilot.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from protocol import MatchRequest
from wrapper.job import WrapperConfig
from wrapper.outcome import JobOutcome
from wrapper.selection import (
    ContainerSettings,
    advertised_tags,
    offered_runtimes,
    without_runtime,
)

logger = logging.getLogger(__name__)


class RuntimeOffer:
    """Container runtimes this pilot offers now; shrinks when one breaks."""

    def __init__(self, settings: ContainerSettings) -> None:
        self.settings = settings
        self.runtimes: list[str] = []
        self.broken: list[str] = []

    def register(self, facts: Mapping[str, object]) -> None:
        """Decide the offer once the node checks ran (their facts say what works)."""
        self.runtimes = offered_runtimes(self.settings, facts)
        logger.info("container runtimes offered: %s", ", ".join(self.runtimes) or "none")

    def record(self, outcome: JobOutcome, config: WrapperConfig) -> WrapperConfig:
        """Take note of a job's outcome: the wrapper config for the next jobs."""
        name = outcome.broken_runtime
        if not name or name in self.broken:
            return config
        logger.error("container runtime %s failed on this node: no longer offering it", name)
        self.broken.append(name)
        self.runtimes = [r for r in self.runtimes if r != name]
        self.settings = without_runtime(self.settings, name)
        return dataclasses.replace(config, containers=self.settings)

    def apply(self, request: MatchRequest) -> MatchRequest:
        """``request`` with the offered runtimes and without the broken runtimes' tags."""
        return dataclasses.replace(
            request,
            container_runtimes=list(self.runtimes),
            tags=advertised_tags(request.tags, self.broken),
        )
