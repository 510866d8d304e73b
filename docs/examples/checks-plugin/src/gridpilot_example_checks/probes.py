"""Two small checks a VO could ship: its software area and the environment it needs."""

from __future__ import annotations

import os
from pathlib import Path

from checks import CheckContext, CheckResult, Status, check


@check("example-software-area", fatal=False, timeout_s=5)
def software_area(ctx: CheckContext) -> CheckResult:
    path = ctx.options.get("path")
    if not path:
        return CheckResult(Status.SKIP, "no software area configured (option path)")
    try:
        entries = len(os.listdir(path))
    except OSError as exc:
        return CheckResult(Status.FAIL, f"software area {path} unusable: {exc.strerror or exc}")
    return CheckResult(
        Status.OK,
        f"software area {Path(path)} lists {entries} entries",
        facts={"software_entries": entries},
        tags=("VO-software",),
    )


@check("example-environment", timeout_s=2)
def environment(ctx: CheckContext) -> CheckResult:
    required = list(ctx.options.get("required", []))
    missing = [name for name in required if not os.environ.get(name)]
    if missing:
        return CheckResult(Status.WARN, f"missing environment: {', '.join(missing)}")
    return CheckResult(Status.OK, f"{len(required)} required variable(s) set")
