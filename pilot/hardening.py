"""What the pilot does at start so that its payloads cannot take its identity.

- Not dumpable (``PR_SET_DUMPABLE`` 0): a payload of the pilot's own user can neither
  ptrace the pilot nor read its ``/proc/<pid>/environ`` or memory, where the token lives.
- ``GRIDPILOT_TOKEN`` leaves the pilot's environment once read, so no process the pilot
  starts (a community check script, a runtime) inherits it; payloads get an allow-listed
  environment anyway (``wrapper.job``).
- The token file: read once into memory. A payload running as the pilot's user without a
  container (plain execution) can read any file the pilot can; unless the site lets the
  pilot delete its copy (``remove_token_file``), gives jobs their own uids
  (``payload_uids``, as root) or requires containers, the pilot says so at start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Optional

from pilot.config import PilotConfig
from wrapper.prctl import set_dumpable

logger = logging.getLogger(__name__)

TOKEN_VARIABLE = "GRIDPILOT_TOKEN"


def harden(
    config: PilotConfig, token_file: Optional[Path], environ: MutableMapping[str, str]
) -> None:
    """Apply the measures above to this process; log what could not be done."""
    if not set_dumpable(False):
        logger.warning("the pilot could not make itself non-dumpable (prctl refused)")
    environ.pop(TOKEN_VARIABLE, None)
    if token_file is not None:
        _protect_token_file(config, token_file)


def payloads_share_pilot_uid(config: PilotConfig) -> bool:
    """Whether a plain payload may run as the pilot's own user."""
    own_uids = not (config.payload_uids and os.geteuid() == 0)
    wrapper = config.wrapper
    return wrapper.allow_plain and not wrapper.containers.required and own_uids


def _protect_token_file(config: PilotConfig, token_file: Path) -> None:
    if config.remove_token_file:
        try:
            token_file.unlink()
        except OSError as exc:
            logger.warning("token file %s not removed: %s", token_file, exc)
        else:
            logger.info("token file %s removed once read (remove_token_file)", token_file)
        return
    if payloads_share_pilot_uid(config):
        logger.warning(
            "token file %s stays readable to payloads run without a container as this "
            "user: set remove_token_file (a copy for this pilot), payload_uids (as root) or "
            "container_required (docs/reliability.md)",
            token_file,
        )
