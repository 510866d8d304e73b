"""Unprivileged user namespaces: what bubblewrap and rootless Apptainer need.

The kernel settings say whether they should work; a real ``unshare -U true`` says whether
they do (seccomp filters and LSMs can refuse what the sysctls allow).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from checks.api import CheckContext, CheckResult, check
from protocol import CheckStatus

SYSCTLS = {
    "max_user_namespaces": "/proc/sys/user/max_user_namespaces",
    "unprivileged_userns_clone": "/proc/sys/kernel/unprivileged_userns_clone",
    "apparmor_restrict_unprivileged_userns": (
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"
    ),
}
"""Only the first exists everywhere; the others are Debian's and Ubuntu's additions."""


def read_sysctls(root: Path = Path("/")) -> dict[str, Optional[int]]:
    """The settings above (None where the file is absent or unreadable)."""
    values: dict[str, Optional[int]] = {}
    for name, path in SYSCTLS.items():
        try:
            values[name] = int((root / path.lstrip("/")).read_text().strip())
        except (OSError, ValueError):
            values[name] = None
    return values


def sysctl_verdict(sysctls: Mapping[str, Optional[int]]) -> Optional[str]:
    """Why the kernel settings forbid unprivileged user namespaces, or None if they allow."""
    if sysctls.get("max_user_namespaces") == 0:
        return "user.max_user_namespaces is 0"
    if sysctls.get("unprivileged_userns_clone") == 0:
        return "kernel.unprivileged_userns_clone is 0"
    return None


def try_unshare(timeout_s: float = 3.0) -> tuple[Optional[bool], str]:
    """(True, "") if ``unshare -U true`` works, (False, why) if refused, None without unshare."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None, "unshare not found"
    try:
        done = subprocess.run(
            [unshare, "-U", "true"], capture_output=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if done.returncode == 0:
        return True, ""
    return False, done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}"


def userns_result(
    sysctls: Mapping[str, Optional[int]], works: Optional[bool], why: str
) -> CheckResult:
    """The decision: the real attempt wins over the settings; WARN when they are refused."""
    facts: dict[str, Any] = {f"userns_{k}": v for k, v in sysctls.items()}
    facts["userns"] = bool(works)
    forbidden = sysctl_verdict(sysctls)
    if works:
        return CheckResult(CheckStatus.OK, "unprivileged user namespaces work", facts, ("userns",))
    if works is None:
        if forbidden:
            return CheckResult(CheckStatus.WARN, f"no user namespaces: {forbidden}", facts)
        return CheckResult(CheckStatus.UNKNOWN, f"settings allow them, cannot try: {why}", facts)
    reason = forbidden or why
    return CheckResult(CheckStatus.WARN, f"unprivileged user namespaces refused: {reason}", facts)


@check("userns", timeout_s=5.0)
def userns(ctx: CheckContext) -> CheckResult:
    works, why = try_unshare()
    return userns_result(read_sysctls(), works, why)
