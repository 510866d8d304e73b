"""Node checks for gridpilot pilots: the public plugin API.

PUBLIC CONTRACT (API_VERSION 1): the names in ``__all__`` and their signatures change
additively only; ``tests/checks/test_public_api.py`` pins them. A community check is::

    from checks import CheckContext, CheckResult, Status, check

    @check("scratch", fatal=True, timeout_s=5)
    def scratch(ctx: CheckContext) -> CheckResult:
        return CheckResult(Status.OK, "scratch mounted", facts={"scratch": True})
"""

from __future__ import annotations

from checks.api import (
    API_VERSION,
    CheckContext,
    CheckResult,
    CheckSource,
    CheckSpec,
    Status,
    check,
)
from checks.errors import CheckDefinitionError, CheckLoadError, ChecksError

__all__ = [
    "API_VERSION",
    "CheckContext",
    "CheckDefinitionError",
    "CheckLoadError",
    "CheckResult",
    "CheckSource",
    "CheckSpec",
    "ChecksError",
    "Status",
    "check",
]
