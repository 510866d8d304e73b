"""What the pilot does at start so that its payloads cannot take its identity.

- Not dumpable (``PR_SET_DUMPABLE`` 0): a payload of the pilot's own user can neither
  ptrace the pilot nor read its ``/proc/<pid>/environ`` or memory, where the token lives.
- ``GRIDPILOT_TOKEN`` leaves the pilot's environment once read, so no process the pilot
  starts (a community check script, a runtime) inherits it; payloads get an allow-listed
  environment anyway (``wrapper.job``).
- The token file: read once into memory, and made the pilot's alone (0600) when others
  could read it and it is the pilot's to change (else a warning): payloads running under
  their own uids (``payload_uids``) must not read it. A payload running as the pilot's user
  without a container (plain execution) can read any file the pilot can; unless the site
  lets the pilot delete its copy (``remove_token_file``), gives jobs their own uids
  (``payload_uids``, as root) or requires containers, the pilot says so at start.
"""

from __future__ import annotations

import logging
import os
import stat
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
    _make_private(token_file)
    if payloads_share_pilot_uid(config):
        logger.warning(
            "token file %s stays readable to payloads run without a container as this "
            "user: set remove_token_file (a copy for this pilot), payload_uids (as root) or "
            "container_required (docs/reliability.md)",
            token_file,
        )


def _make_private(token_file: Path) -> None:
    """Take group and other permissions off the token file, or say why it stays open."""
    try:
        info = token_file.stat()
    except OSError as exc:
        logger.warning("token file %s: %s", token_file, exc)
        return
    if not info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return
    try:
        if info.st_uid != os.geteuid():
            raise PermissionError("it belongs to another user")
        os.chmod(token_file, stat.S_IMODE(info.st_mode) & 0o700)
    except OSError as exc:
        logger.warning("token file %s stays readable to other users: %s", token_file, exc)
    else:
        logger.info("token file %s made readable to this user only", token_file)
