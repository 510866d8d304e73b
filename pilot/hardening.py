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
- The work dir (``prepare_workdir``): the pilot's alone (0700), or 0711 when jobs run under
  uids of their own, which must pass through it to their job dirs (each 0700, theirs:
  ``wrapper.job``) but may neither list it nor open what the pilot keeps there: the spool
  (0700: other jobs' reports and output archives) and the pilot's log (0600).
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


WORKDIR_MODE = 0o700
WORKDIR_MODE_FOR_JOB_UIDS = 0o711
"""Search (x) but no read for others: job uids reach their own job dirs, nothing else."""
PRIVATE_FILE_MODE = 0o600


def prepare_workdir(config: PilotConfig) -> None:
    """Make the work dir (and its parents) if needed, with ``workdir_mode``; an existing
    one that is another user's and open to others is warned about. Raises ``OSError``."""
    workdir = config.workdir
    workdir.mkdir(parents=True, exist_ok=True, mode=WORKDIR_MODE)
    mode = workdir_mode(config)
    info = workdir.stat()
    if stat.S_IMODE(info.st_mode) == mode:
        return
    if info.st_uid == os.geteuid():
        os.chmod(workdir, mode)
    elif info.st_mode & (stat.S_IRWXG | stat.S_IRWXO) & ~mode:
        logger.warning("work dir %s belongs to another user and stays open to others", workdir)


def workdir_mode(config: PilotConfig) -> int:
    return WORKDIR_MODE_FOR_JOB_UIDS if own_job_uids(config) else WORKDIR_MODE


def open_private(path: Path) -> None:
    """Create ``path`` if needed, readable and writable by this user only (a log file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & ~PRIVATE_FILE_MODE:
            os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


def own_job_uids(config: PilotConfig) -> bool:
    """Whether each job runs under a uid of its own (a root pilot with ``payload_uids``)."""
    return bool(config.payload_uids) and os.geteuid() == 0


def payloads_share_pilot_uid(config: PilotConfig) -> bool:
    """Whether a plain payload may run as the pilot's own user."""
    wrapper = config.wrapper
    return wrapper.allow_plain and not wrapper.containers.required and not own_job_uids(config)


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
