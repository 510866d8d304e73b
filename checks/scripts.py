"""Executable site probes in the Nagios plugin convention.

Exit 0/1/2/3 = ok/warn/fail/unknown. The first line is the summary (Nagios performance data
after ``|`` becomes facts); later ``key=value`` lines are facts and ``tag=NAME`` lines are
tags; other lines are long output and only logged. The script runs inside the check's
child process, so the runner's deadline kills it with its process group.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from protocol import CheckStatus

logger = logging.getLogger(__name__)

NAGIOS_STATUS = {
    0: CheckStatus.OK,
    1: CheckStatus.WARN,
    2: CheckStatus.FAIL,
    3: CheckStatus.UNKNOWN,
}
OUTPUT_LIMIT_BYTES = 64 * 1024
"""A probe's output is a few lines; more is read but cut here."""

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_PERF = re.compile(r"(?:'([^']+)'|([^\s'=]+))=(-?[0-9]+(?:\.[0-9]+)?)")

FactValue = Union[int, float, str]


def script_name(path: Path) -> str:
    """A check name for a script: its file name without extension, made name-safe."""
    stem = path.name.split(".", 1)[0] if not path.name.startswith(".") else path.name
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:64]
    return name if name and name[0] not in ".-" else f"script_{name}"[:64]


def fact_value(text: str) -> FactValue:
    """``"42"`` -> 42, ``"1.5"`` -> 1.5, anything else stays a string."""
    for kind in (int, float):
        try:
            number = kind(text)
        except ValueError:
            continue
        if number == number and abs(number) != float("inf"):
            return number
    return text


def parse_output(returncode: int, output: bytes) -> dict[str, Any]:
    """A probe's exit code and output -> a check outcome (status, message, facts, tags)."""
    if returncode < 0:
        return _outcome(CheckStatus.FAIL, f"script was killed by {_signal_name(-returncode)}")
    text = output[:OUTPUT_LIMIT_BYTES].decode("utf-8", "replace")
    if "\x00" in text or text.count("\ufffd") > len(text) // 4:
        return _outcome(CheckStatus.UNKNOWN, f"script output is not text (exit {returncode})")
    lines = text.splitlines()
    summary, _, perfdata = (lines[0] if lines else "").partition("|")
    facts: dict[str, FactValue] = {}
    for quoted, bare, value in _PERF.findall(perfdata):
        facts[(quoted or bare).strip()] = fact_value(value)
    tags: list[str] = []
    for line in lines[1:]:
        key, sep, value = line.strip().partition("=")
        if not sep or not _KEY.match(key.strip()):
            continue
        if key.strip() == "tag":
            if value.strip():
                tags.append(value.strip())
        else:
            facts[key.strip()] = fact_value(value.strip())
    summary = " ".join(summary.split()) or "(no output)"
    status = NAGIOS_STATUS.get(returncode)
    if status is None:
        return _outcome(
            CheckStatus.UNKNOWN,
            f"exit code {returncode} is not a Nagios state (0-3): {summary}",
            facts,
            tags,
        )
    return _outcome(status, summary, facts, tags)


def run_script(
    path: Path, *, workdir: Path, options: Mapping[str, Any], env: Mapping[str, str]
) -> dict[str, Any]:
    """Run one probe to completion and parse what it said; the runner bounds the time."""
    args = options.get("args", [])
    if isinstance(args, str) or not isinstance(args, Sequence):
        return _outcome(CheckStatus.FAIL, f"option args must be a list, got {args!r}")
    try:
        completed = subprocess.run(
            [str(path), *(str(arg) for arg in args)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            cwd=str(workdir) if workdir.is_dir() else None,
            env=dict(env),
            check=False,
        )
    except OSError as exc:
        return _outcome(CheckStatus.FAIL, f"cannot run {path}: {exc}")
    if completed.stderr:
        logger.info("%s stderr: %s", path.name, completed.stderr.decode("utf-8", "replace")[-2000:])
    return parse_output(completed.returncode, completed.stdout)


def is_probe(path: Path) -> bool:
    """True for a regular, executable, non-hidden file (the ones a script dir runs)."""
    return (
        not path.name.startswith(".")
        and not path.name.endswith("~")
        and path.is_file()
        and os.access(path, os.X_OK)
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _outcome(
    status: CheckStatus,
    message: str,
    facts: Mapping[str, FactValue] | None = None,
    tags: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "status": status.value,
        "message": message,
        "facts": dict(facts or {}),
        "tags": list(tags),
    }
