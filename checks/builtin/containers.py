"""Container runtimes: Apptainer/Singularity and bubblewrap, present and really working.

bubblewrap is tried with a real trivial container (``bwrap --ro-bind / / true``).
Apptainer/Singularity need an image to run one: with option ``image`` (a SIF file or a
directory image) it runs ``exec IMAGE true``; without, ``--version`` must answer. Tags
name each working runtime (``bwrap``, ``apptainer``, ``singularity``); the wrapper and
matching use them.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from checks.api import CheckContext, CheckResult, check
from protocol import CheckStatus

RUNTIMES = ("apptainer", "singularity", "bwrap")
TRY_TIMEOUT_S = 8.0


def probe_command(runtime: str, executable: str, image: Optional[str]) -> list[str]:
    """The command that proves ``runtime`` works on this node."""
    if runtime == "bwrap":
        return [executable, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"]
    if image:
        return [executable, "exec", "--containall", image, "true"]
    return [executable, "--version"]


def try_runtime(command: Sequence[str]) -> tuple[bool, str]:
    """(worked, first line of output or the error)."""
    try:
        done = subprocess.run(
            list(command), capture_output=True, timeout=TRY_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    output = (done.stdout or done.stderr).decode("utf-8", "replace").strip()
    first = output.splitlines()[0] if output else ""
    return done.returncode == 0, first or f"exit {done.returncode}"


def containers_result(
    tried: Mapping[str, tuple[bool, str]], required: Sequence[str]
) -> CheckResult:
    """OK when a runtime works; WARN when none does (only plain execution is left, which
    cannot hide the pilot user's files from payloads);
    FAIL when a runtime the site requires (option ``required``) does not work."""
    working = [name for name, (ok, _) in tried.items() if ok]
    facts: dict[str, Any] = {"container_runtimes": working}
    for name, (_ok, detail) in tried.items():
        facts[f"{name}_detail"] = detail
    broken = [
        f"{name}: {tried[name][1] if name in tried else 'not installed'}"
        for name in required
        if name not in working
    ]
    if broken:
        return CheckResult(
            CheckStatus.FAIL,
            "required runtime not working: " + "; ".join(broken),
            facts,
            tuple(working),
        )
    if not working:
        found = ", ".join(f"{n} ({d})" for n, (_, d) in tried.items()) or "none installed"
        return CheckResult(
            CheckStatus.WARN,
            f"no working container runtime, payloads can only run without isolation "
            f"(plain, see docs/reliability.md): {found}",
            facts,
        )
    return CheckResult(CheckStatus.OK, "working: " + ", ".join(working), facts, tuple(working))


@check("containers", timeout_s=20.0)
def containers(ctx: CheckContext) -> CheckResult:
    required = ctx.options.get("required", [])
    if isinstance(required, str) or not isinstance(required, Sequence):
        return CheckResult(CheckStatus.FAIL, f"option required must be a list, got {required!r}")
    image = ctx.options.get("image")
    tried: dict[str, tuple[bool, str]] = {}
    for runtime in RUNTIMES:
        executable = shutil.which(runtime)
        if executable is not None:
            tried[runtime] = try_runtime(probe_command(runtime, executable, image))
    return containers_result(tried, [str(name) for name in required])
