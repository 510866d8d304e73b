"""The work dir: it exists, a file can really be written and read back, and space is free."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from checks.api import CheckContext, CheckResult, check
from checks.builtin.thresholds import format_number, number_option, threshold_status
from protocol import CheckStatus

MIB = 1024 * 1024
_PROBE_BYTES = os.urandom(64 * 1024)


def probe_write(directory: Path) -> None:
    """Write, sync, read back and remove a file in ``directory``; OSError if any step fails."""
    fd, name = tempfile.mkstemp(prefix=".gridpilot-disk-check-", dir=str(directory))
    try:
        with os.fdopen(fd, "wb") as probe:
            probe.write(_PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
        if Path(name).read_bytes() != _PROBE_BYTES:
            raise OSError(f"{name}: data read back differs from data written")
    finally:
        os.unlink(name)


@check("disk", fatal=True, timeout_s=10.0, interval_s=300.0)
def disk(ctx: CheckContext) -> CheckResult:
    fail_below = number_option(ctx.options, "min_free_mb", 1024)
    warn_below = number_option(ctx.options, "warn_free_mb", 5120)
    path = Path(ctx.options.get("path", ctx.workdir))
    facts: dict[str, Any] = {"disk_path": str(path)}
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        return CheckResult(CheckStatus.FAIL, f"work dir {path} {what}", facts)
    try:
        probe_write(path)
    except OSError as exc:
        return CheckResult(CheckStatus.FAIL, f"cannot write in {path}: {exc}", facts)
    stats = os.statvfs(path)
    free_mb = stats.f_bavail * stats.f_frsize // MIB
    facts.update(
        disk_free_mb=free_mb,
        disk_total_mb=stats.f_blocks * stats.f_frsize // MIB,
        disk_free_inodes=stats.f_favail,
    )
    status = threshold_status(free_mb, fail_below=fail_below, warn_below=warn_below)
    message = f"{free_mb} MB free in {path}"
    if status is not CheckStatus.OK:
        threshold = fail_below if status is CheckStatus.FAIL else warn_below
        message += f", below {format_number(threshold)} MB"
    return CheckResult(status, message, facts)
