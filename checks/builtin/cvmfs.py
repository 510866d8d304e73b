"""CVMFS repositories the site or VO needs: mounted (autofs mounts on first access) and listable.

Each listing runs in its own thread with a deadline, so one hung repository is reported
as such without hiding the others. Skipped when no repository is configured.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from checks.api import CheckContext, CheckResult, check
from checks.builtin.thresholds import number_option
from protocol import CheckStatus

CVMFS_ROOT = Path("/cvmfs")


def list_repository(path: Path) -> Optional[str]:
    """None if ``path`` lists at least one entry, else what went wrong."""
    try:
        return None if os.listdir(path) else "mounted but empty"
    except OSError as exc:
        return exc.strerror or str(exc)


def probe_repositories(paths: dict[str, Path], timeout_s: float) -> dict[str, Optional[str]]:
    """``list_repository`` for every path at once; a listing still running at the deadline
    is reported as hung (its daemon thread is left behind: it may be stuck in the kernel)."""
    results: dict[str, Optional[str]] = {}

    def probe(name: str, path: Path) -> None:
        results[name] = list_repository(path)

    threads = [
        threading.Thread(target=probe, args=(name, path), daemon=True)
        for name, path in paths.items()
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = f"no answer within {timeout_s:g} s"
    return {name: results.get(name, hung) for name in paths}


def cvmfs_result(repositories: Sequence[str], problems: dict[str, Optional[str]]) -> CheckResult:
    """FAIL naming each unusable repository; tags ``cvmfs:<repo>`` for the usable ones."""
    good = [repo for repo in repositories if problems.get(repo) is None]
    bad = {repo: why for repo, why in problems.items() if why is not None}
    facts: dict[str, Any] = {"cvmfs_repositories": good}
    tags = tuple(f"cvmfs:{repo}" for repo in good)
    if bad:
        detail = "; ".join(f"{repo}: {why}" for repo, why in bad.items())
        return CheckResult(
            CheckStatus.FAIL, f"{len(bad)} of {len(repositories)} unusable: {detail}", facts, tags
        )
    return CheckResult(CheckStatus.OK, f"{len(good)} repositories readable", facts, tags)


@check("cvmfs", timeout_s=20.0, interval_s=600.0)
def cvmfs(ctx: CheckContext) -> CheckResult:
    repositories = ctx.options.get("repositories", [])
    if isinstance(repositories, str) or not isinstance(repositories, Sequence):
        return CheckResult(
            CheckStatus.FAIL, f"option repositories must be a list, got {repositories!r}"
        )
    if not repositories:
        return CheckResult(CheckStatus.SKIP, "no CVMFS repository configured (option repositories)")
    root = Path(ctx.options.get("root", CVMFS_ROOT))
    timeout_s = number_option(ctx.options, "timeout_per_repository_s", 5.0)
    names = [str(repo) for repo in repositories]
    problems = probe_repositories({name: root / name for name in names}, timeout_s)
    return cvmfs_result(names, problems)
