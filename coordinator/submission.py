"""Client-side submission: read a job file, upload its local input sandbox, submit.

DIRAC places input sandbox files in the job's work dir under their base names; so do we.
Entries that are references rather than local files (``LFN:``, ``SB:``) are sent as written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from coordinator.errors import InvalidDescription
from coordinator.logic.description import job_fields, parse_description
from pilot.client import CoordinatorClient
from protocol import SubmitReply, SubmitRequest
from wrapper.sandbox import pack

REFERENCE_PREFIXES = ("LFN:", "SB:", "lfn:", "sb:")
PARAMETRIC_PREFIXES = ("%s", "%(")
"""Entries filled in per job by parametric expansion, not files to upload (as DIRAC does)."""


def description_format(path: Path, explicit: str | None = None) -> str:
    if explicit:
        return explicit
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    return "jdl"


def local_input_files(description: dict[str, Any], base_dir: Path) -> list[Path]:
    """The InputSandbox entries that name local files, resolved against ``base_dir``."""
    files: list[Path] = []
    for entry in job_fields(description).input_sandbox:
        text = str(entry).strip()
        if not text or text.startswith(REFERENCE_PREFIXES) or text.startswith(PARAMETRIC_PREFIXES):
            continue
        path = (base_dir / text).expanduser()
        if not path.exists():
            raise InvalidDescription(
                f"InputSandbox file not found: {text} (looked in {base_dir})",
                details={"attribute": "InputSandbox", "file": text},
            )
        files.append(path)
    return files


def _stage(files: list[Path], staging: Path) -> list[str]:
    """Place the files under their base names in ``staging`` (hard links when possible)."""
    names: list[str] = []
    for path in files:
        target = staging / path.name
        if target.exists():
            raise InvalidDescription(
                f"two InputSandbox entries share the name {path.name}",
                details={"attribute": "InputSandbox", "file": path.name},
            )
        if path.is_dir():
            shutil.copytree(path, target, symlinks=True)
        else:
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
        names.append(path.name)
    return names


def submit_file(client: CoordinatorClient, path: Path, fmt: str | None = None) -> SubmitReply:
    text = path.read_text(encoding="utf-8")
    kind = description_format(path, fmt)
    description = parse_description(text, kind)
    files = local_input_files(description, path.parent)
    digests: list[str] = []
    if files:
        with tempfile.TemporaryDirectory(prefix="gridpilot-isb-") as tmp:
            staging = Path(tmp) / "files"
            staging.mkdir()
            names = _stage(files, staging)
            result = pack(staging, names, Path(tmp) / "input.tar.gz")
            client.upload_sandbox(result.path, result.sha256)
            digests.append(result.sha256)
    return client.submit(SubmitRequest(description=text, format=kind, input_sandboxes=digests))
