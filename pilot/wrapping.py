"""The wrapper's configuration, built once from the pilot's."""

from __future__ import annotations

from pilot.config import PilotConfig
from pilot.containers import container_settings
from wrapper.job import WrapperConfig
from wrapper.sandbox import SandboxLimits
from wrapper.watchdog import WatchdogPolicy


def wrapper_config(config: PilotConfig) -> WrapperConfig:
    """Everything a ``JobRun`` needs from the site: isolation, limits, watchdog."""
    return WrapperConfig(
        allow_plain=config.allow_plain,
        kill_grace_s=config.kill_grace_s,
        max_output_sandbox_bytes=config.max_output_sandbox_bytes,
        sandbox_limits=SandboxLimits(),
        containers=container_settings(config),
        watchdog=WatchdogPolicy.from_settings(config),
    )
