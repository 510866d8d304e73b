"""A job's output sandbox for its owner: the archive, the files in it, one file of it.

The archive is the tar.gz the pilot uploaded (``JobInfo.output_sandbox``); reading it needs
the same right as reading the job. Listing and extracting stream through the archive once
and never hold more than one file's piece in memory.
"""

from __future__ import annotations

import dataclasses
import tarfile
from collections.abc import Iterator
from pathlib import Path

from coordinator.errors import NotFound
from coordinator.logic.auth import TokenClaims
from coordinator.logic.jobs import visible_job
from coordinator.logic.sandboxes import SandboxFiles, StoredSandbox
from coordinator.store.database import Database

MAX_LISTED_FILES = 10_000
CHUNK_BYTES = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class OutputFile:
    name: str
    size_bytes: int


def output_archive(
    db: Database, files: SandboxFiles, claims: TokenClaims, job_id: int
) -> StoredSandbox:
    """The job's output sandbox, if the caller may see the job and it has one."""
    with db.read() as conn:
        digest = str(visible_job(conn, claims, job_id)["output_sandbox"] or "")
    if not digest:
        raise NotFound(f"job {job_id} has no output sandbox (yet)", details={"job_id": job_id})
    return files.existing(digest)


def list_files(archive: Path) -> list[OutputFile]:
    """The regular files in the archive, in archive order (at most ``MAX_LISTED_FILES``)."""
    found: list[OutputFile] = []
    with tarfile.open(archive, mode="r|gz") as tar:
        for member in tar:
            if member.isfile():
                found.append(OutputFile(member.name.removeprefix("./"), member.size))
                if len(found) >= MAX_LISTED_FILES:
                    break
    return found


def file_chunks(archive: Path, name: str) -> Iterator[bytes]:
    """The bytes of the regular file ``name`` in the archive; ``NotFound`` if there is none.

    The first chunk is read before this returns, so a missing file is an error rather
    than an empty download."""
    tar = tarfile.open(archive, mode="r|gz")  # noqa: SIM115 (closed by _chunks or below)
    try:
        for member in tar:
            if member.isfile() and member.name.removeprefix("./") == name:
                stream = tar.extractfile(member)
                if stream is None:
                    break
                return _chunks(tar, stream.read)
    except BaseException:
        tar.close()
        raise
    tar.close()
    raise NotFound(f"no file {name!r} in the output sandbox", details={"file": name})


def _chunks(tar: tarfile.TarFile, read: object) -> Iterator[bytes]:
    try:
        while True:
            piece = read(CHUNK_BYTES)  # type: ignore[operator]
            if not piece:
                return
            yield piece
    finally:
        tar.close()
