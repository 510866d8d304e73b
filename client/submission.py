"""Client-side submission: read job files, check them whole, upload their input sandbox, submit.

A job file is read and checked here as the coordinator will check it (the same parser, the
same parametric expansion, the same field rules), so that a mistake in the third of three
files is found before the first is submitted. DIRAC places input sandbox files in the job's
work dir under their base names; so do we. Entries that are references (``LFN:``, ``SB:``)
are sent as written; entries with wildcards (``isb/*.txt``) are expanded here, as DIRAC's
API does, and one that matches nothing is an error.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

from client.api import UserClient
from client.errors import InputError
from client.textfiles import read_text
from protocol import SubmitReply, SubmitRequest
from wrapper.errors import WrapperError
from wrapper.sandbox import pack

REFERENCE_PREFIXES = ("LFN:", "SB:", "lfn:", "sb:")
PARAMETRIC_MARKS = ("%s", "%(", "%j")
"""Entries still holding a placeholder are filled in per job, not files to upload."""
WILDCARDS = ("*", "?", "[")


@dataclasses.dataclass(frozen=True)
class PreparedSubmission:
    """A job file read and checked, ready to send."""

    path: Path
    text: str
    fmt: str
    job_count: int
    input_files: list[Path]


def description_format(path: Path, explicit: Optional[str] = None) -> str:
    if explicit:
        return explicit
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    return "jdl"


def parse_file(path: Path, fmt: Optional[str] = None) -> tuple[str, str, dict[str, Any]]:
    """(text, format, description) of a job file; errors name the file (and line)."""
    from coordinator.errors import CoordinatorError
    from coordinator.logic.description import parse_description

    text = read_text(path)
    kind = description_format(path, fmt)
    try:
        return text, kind, parse_description(text, kind)
    except CoordinatorError as exc:
        raise InputError(f"{path}: {exc.message}", details=exc.details) from exc


def expand_file(path: Path, description: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs a description gives, each checked as the coordinator will check it."""
    from coordinator.errors import CoordinatorError
    from coordinator.logic.description import job_fields
    from coordinator.logic.parametric import expand

    try:
        jobs = expand(description)
        for job in jobs:
            job_fields(job)
    except CoordinatorError as exc:
        raise InputError(f"{path}: {exc.message}", details=exc.details) from exc
    return jobs


def _sandbox_entries(jobs: Iterable[dict[str, Any]]) -> list[str]:
    from coordinator.logic.description import job_fields

    entries: dict[str, None] = {}
    for job in jobs:
        entries.update(dict.fromkeys(str(entry).strip() for entry in job_fields(job).input_sandbox))
    return [
        entry
        for entry in entries
        if entry
        and not entry.startswith(REFERENCE_PREFIXES)
        and not any(mark in entry for mark in PARAMETRIC_MARKS)
    ]


def local_input_files(jobs: Iterable[dict[str, Any]], base_dir: Path) -> list[Path]:
    """The InputSandbox entries naming local files, resolved against ``base_dir``, with
    wildcards expanded (sorted, as ``ls`` gives them)."""
    files: list[Path] = []
    for entry in _sandbox_entries(jobs):
        pattern = base_dir / Path(entry).expanduser()
        if any(mark in entry for mark in WILDCARDS):
            matches = sorted(Path(found) for found in glob.glob(str(pattern)))
            if not matches:
                raise InputError(
                    f"InputSandbox pattern {entry} matches no file (looked in {base_dir})",
                    details={"attribute": "InputSandbox", "file": entry},
                )
            files.extend(matches)
        elif pattern.exists():
            files.append(pattern)
        else:
            raise InputError(
                f"InputSandbox file not found: {entry} (looked in {base_dir})",
                details={"attribute": "InputSandbox", "file": entry},
            )
    names: dict[str, Path] = {}
    for path in files:
        if path.is_file() and not os.access(path, os.R_OK):
            raise InputError(f"InputSandbox file {path}: permission denied")
        if path.name in names and names[path.name] != path:
            raise InputError(
                f"two InputSandbox files share the name {path.name}: {names[path.name]} "
                f"and {path} (each lands in the job's work dir under its base name)",
                details={"attribute": "InputSandbox", "file": path.name},
            )
        names[path.name] = path
    return list(names.values())


def prepare(path: Path, fmt: Optional[str] = None) -> PreparedSubmission:
    text, kind, description = parse_file(path, fmt)
    jobs = expand_file(path, description)
    try:
        files = local_input_files(jobs, path.parent)
    except InputError as exc:
        raise InputError(f"{path}: {exc.message}", details=exc.details) from exc
    return PreparedSubmission(path, text, kind, len(jobs), files)


def _stage(files: list[Path], staging: Path) -> list[str]:
    """Place the files under their base names in ``staging`` (hard links when possible)."""
    for path in files:
        target = staging / path.name
        if path.is_dir():
            shutil.copytree(path, target, symlinks=True)
        else:
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
    return [path.name for path in files]


def submit_prepared(client: UserClient, prepared: PreparedSubmission) -> SubmitReply:
    digests: list[str] = []
    if prepared.input_files:
        with tempfile.TemporaryDirectory(prefix="gridpilot-isb-") as tmp:
            staging = Path(tmp) / "files"
            staging.mkdir()
            try:
                names = _stage(prepared.input_files, staging)
                result = pack(staging, names, Path(tmp) / "input.tar.gz")
            except (OSError, WrapperError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else None
                raise InputError(
                    f"{prepared.path}: cannot pack the input sandbox: {reason or exc}"
                ) from exc
            client.upload_sandbox(result.path, result.sha256)
            digests.append(result.sha256)
    request = SubmitRequest(description=prepared.text, format=prepared.fmt, input_sandboxes=digests)
    return client.submit(request)
