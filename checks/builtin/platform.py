"""The node's platform in the ``ARCH-OS`` form jobs ask for (``x86_64-el9``, ``aarch64-debian12``).

The Enterprise Linux rebuilds (RHEL, AlmaLinux, Rocky, CentOS, Oracle, Scientific, ...)
share one ABI per major release, so they all map to ``elN``. Fedora and Amazon Linux have
their own release lines and keep their own names. Other distributions are ``IDmajor``.
"""

from __future__ import annotations

import os
import platform as stdlib_platform
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from checks.api import CheckContext, CheckResult, check
from protocol import CheckStatus

OS_RELEASE_PATHS = (Path("/etc/os-release"), Path("/usr/lib/os-release"))

EL_IDS = frozenset(
    {
        "almalinux",
        "centos",
        "circle",
        "cloudlinux",
        "eurolinux",
        "miraclelinux",
        "navy",
        "ol",
        "rhel",
        "rocky",
        "scientific",
        "virtuozzo",
    }
)
_NOT_EL_IDS = frozenset({"amzn", "fedora"})
"""Say ``ID_LIKE="... rhel ..."`` but do not follow EL's major versions."""

_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "ppc64el": "ppc64le"}


def parse_os_release(text: str) -> dict[str, str]:
    """os-release ``KEY=value`` lines (shell quoting) -> dict; malformed lines are skipped."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            fields[key] = " ".join(words)
    return fields


def normalise_arch(machine: str) -> str:
    """``uname -m`` spelt the way platform strings spell it."""
    machine = machine.strip().lower()
    return _ARCH_ALIASES.get(machine, machine) or "unknown"


def os_tag(os_release: Mapping[str, str]) -> str:
    """``el9``, ``debian12``, ``ubuntu22``, ``fedora40``; ``unknown`` without an ID."""
    os_id = os_release.get("ID", "").strip().lower()
    like = os_release.get("ID_LIKE", "").lower().split()
    major = os_release.get("VERSION_ID", "").split(".")[0].strip()
    if os_id in EL_IDS or ("rhel" in like and os_id not in _NOT_EL_IDS):
        family = "el"
    else:
        family = re.sub(r"[^a-z0-9]", "", os_id) or "unknown"
    has_major = re.fullmatch(r"[0-9]+", major) is not None
    return f"{family}{major}" if has_major and family != "unknown" else family


def platform_string(os_release: Mapping[str, str], machine: str) -> str:
    """``ARCH-OS``, e.g. ``x86_64-el9``."""
    return f"{normalise_arch(machine)}-{os_tag(os_release)}"


def glibc_version() -> str:
    """The C library's version (``2.34``), or "" when it is not glibc."""
    try:
        name_version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        name_version = ""
    if name_version.startswith("glibc "):
        return name_version.split()[1]
    library, version = stdlib_platform.libc_ver()
    return version if library == "glibc" else ""


def _read_os_release(options: Mapping[str, Any]) -> dict[str, str]:
    paths = [Path(options["os_release_path"])] if "os_release_path" in options else OS_RELEASE_PATHS
    for path in paths:
        try:
            return parse_os_release(path.read_text(errors="replace"))
        except OSError:
            continue
    return {}


@check("platform", timeout_s=5.0)
def platform(ctx: CheckContext) -> CheckResult:
    os_release = _read_os_release(ctx.options)
    machine = str(ctx.options.get("machine", stdlib_platform.machine()))
    name = platform_string(os_release, machine)
    facts = {
        "platform": name,
        "arch": normalise_arch(machine),
        "os_id": os_release.get("ID", ""),
        "os_version": os_release.get("VERSION_ID", ""),
        "os_name": os_release.get("PRETTY_NAME", ""),
        "kernel": stdlib_platform.release(),
        "glibc": glibc_version(),
    }
    if not os_release.get("ID"):
        return CheckResult(
            CheckStatus.WARN, f"cannot identify the OS: no os-release ID ({name})", facts, (name,)
        )
    return CheckResult(
        CheckStatus.OK, f"{name} ({facts['os_name'] or facts['os_id']})", facts, (name,)
    )
