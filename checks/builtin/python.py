"""The Python running the pilot: version, implementation, executable."""

from __future__ import annotations

import platform as stdlib_platform
import sys
from collections.abc import Sequence

from checks.api import CheckContext, CheckResult, check
from protocol import CheckStatus

MIN_PYTHON = (3, 9)


def parse_version(text: str) -> tuple[int, ...]:
    """``"3.9"`` -> ``(3, 9)``; ValueError for anything else."""
    parts = tuple(int(part) for part in str(text).strip().split("."))
    if not parts or any(part < 0 for part in parts):
        raise ValueError(f"not a version: {text!r}")
    return parts


def version_meets(version: Sequence[int], minimum: Sequence[int]) -> bool:
    """True when ``version`` is at least ``minimum`` (compared component by component)."""
    return tuple(version[: len(minimum)]) >= tuple(minimum)


@check("python", fatal=True, timeout_s=5.0)
def python(ctx: CheckContext) -> CheckResult:
    minimum = parse_version(ctx.options.get("min_version", "3.9"))
    version = tuple(sys.version_info[:3])
    text = ".".join(str(part) for part in version)
    facts = {
        "python_version": text,
        "python_implementation": stdlib_platform.python_implementation(),
        "python_executable": sys.executable,
    }
    wanted = ".".join(str(part) for part in minimum)
    if not version_meets(version, minimum):
        return CheckResult(CheckStatus.FAIL, f"Python {text} is older than {wanted}", facts)
    return CheckResult(CheckStatus.OK, f"{facts['python_implementation']} {text}", facts)
