"""Sandboxes: gzip-compressed tar archives named by the sha256 of their bytes.

``pack`` collects files by name, glob or directory from one base directory and never follows
a symlink out of it. ``unpack`` (``wrapper.extraction``, re-exported here) validates every
member and never writes outside the destination, in bounded memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Optional

from wrapper.config import SandboxLimits
from wrapper.errors import ChecksumMismatch
from wrapper.extraction import unpack
from wrapper.gzipstream import GzipStream, level_for
from wrapper.patterns import ScanLimits, inside, select

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class PackResult:
    """The archive written by ``pack`` and what went into it.

    ``included`` names the files stored (directories are stored too, so empty ones survive,
    but are not listed); ``missing`` names the patterns that matched nothing that could be
    stored; ``left_out`` names the files that matched but did not fit under ``max_bytes``;
    ``refused`` the patterns whose walk went past the scan limits, with why.
    """

    path: Path
    sha256: str
    size_bytes: int
    included: list[str]
    missing: list[str]
    left_out: list[str]
    refused: dict[str, str] = dataclasses.field(default_factory=dict)

    def refused_summary(self) -> str:
        """``the work dir holds <why> for pattern <p>`` (the first refusal): a minor status."""
        for pattern, why in self.refused.items():
            return f"the work dir holds {why} for pattern {pattern}"
        return ""

    def left_out_summary(self, shown: int = 3) -> str:
        """``a, b and c left out`` or ``a, b, c and 4 more left out``: fits a minor status."""
        names = self.left_out
        if len(names) > shown:
            return f"{', '.join(names[:shown])} and {len(names) - shown} more left out"
        if len(names) > 1:
            return f"{', '.join(names[:-1])} and {names[-1]} left out"
        return f"{names[0]} left out" if names else ""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected_sha256: str) -> None:
    """Raise ``ChecksumMismatch`` unless the file hashes to ``expected_sha256``."""
    actual = sha256_file(path)
    if actual != expected_sha256.lower():
        raise ChecksumMismatch(expected_sha256, actual)


# ----------------------------------------------------------------------------- packing


class _HashingWriter:
    """File-like sink that hashes and counts the bytes it passes on."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()
        self.size_bytes = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size_bytes += len(data)
        return self._handle.write(data)

    def flush(self) -> None:
        self._handle.flush()


def _open_member(base_real: str, name: str, kind: str) -> Optional[BinaryIO]:
    """Open a file to store, or None when it is a link out of the base or not a file."""
    abs_path = os.path.join(base_real, name)
    if kind == "link":
        target = os.path.realpath(abs_path)
        if not inside(target, base_real) or not os.path.isfile(target):
            logger.warning("not packing %s: link to something outside or not a file", name)
            return None
        abs_path = target
    fd = os.open(abs_path, os.O_RDONLY | os.O_NOFOLLOW)
    return os.fdopen(fd, "rb")


def _add_file(tar: tarfile.TarFile, name: str, handle: BinaryIO, gz: GzipStream) -> None:
    st = os.fstat(handle.fileno())
    # Already-compressed data is stored, not deflated again (the header goes with it).
    gz.set_level(level_for(handle, st.st_size))
    info = tarfile.TarInfo(name)
    info.size = st.st_size
    info.mode = stat.S_IMODE(st.st_mode) & 0o777
    info.mtime = int(st.st_mtime)
    tar.addfile(info, handle)


def _add_dir(tar: tarfile.TarFile, base_real: str, name: str) -> None:
    st = os.lstat(os.path.join(base_real, name))
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = stat.S_IMODE(st.st_mode) & 0o777
    info.mtime = int(st.st_mtime)
    tar.addfile(info)


class _Packer:
    """Adds entries to an open tar while keeping the size cap."""

    def __init__(
        self, tar: tarfile.TarFile, gz: GzipStream, base_real: str, max_bytes: Optional[int]
    ) -> None:
        self.tar = tar
        self.gz = gz
        self.base_real = base_real
        self.max_bytes = max_bytes
        self.total_bytes = 0
        self.stored: list[str] = []
        self.included: list[str] = []
        self.left_out: list[str] = []

    def add(self, name: str, kind: str) -> None:
        if kind == "dir":
            _add_dir(self.tar, self.base_real, name)
            self.stored.append(name)
            return
        try:
            handle = _open_member(self.base_real, name, kind)
        except OSError as exc:
            logger.warning("not packing %s: %s", name, exc)
            return
        if handle is None:
            return
        with handle:
            size = os.fstat(handle.fileno()).st_size
            if self.max_bytes is not None and self.total_bytes + size > self.max_bytes:
                self.left_out.append(name)
                return
            _add_file(self.tar, name, handle, self.gz)
        self.total_bytes += size
        self.included.append(name)
        self.stored.append(name)


def pack(
    base_dir: Path,
    patterns: Sequence[str],
    dest: Path,
    *,
    max_bytes: Optional[int] = None,
    scan_limits: ScanLimits = ScanLimits(),
) -> PackResult:
    """Write the files ``patterns`` select under ``base_dir`` to the archive ``dest``.

    ``max_bytes`` caps the summed size of the stored files; files that would go over it are
    skipped (in order) and listed in ``left_out``. ``dest`` itself is never packed. A
    pattern whose walk goes beyond ``scan_limits`` selects nothing and is listed in
    ``refused``; the other patterns are still packed.
    """
    base_real = os.path.realpath(base_dir)
    dest_real = os.path.realpath(dest)
    skip = os.path.relpath(dest_real, base_real) if inside(dest_real, base_real) else ""
    selection = select(base_real, patterns, skip.replace(os.sep, "/"), scan_limits)
    chosen, per_pattern = selection.chosen, selection.per_pattern
    with open(dest, "wb") as raw:
        sink = _HashingWriter(raw)
        gz = GzipStream(sink)
        tar = tarfile.TarFile(
            fileobj=gz, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK_BYTES
        )
        with tar:
            packer = _Packer(tar, gz, base_real, max_bytes)
            for name, kind in chosen.items():
                packer.add(name, kind)
        gz.close()
    found = set(packer.stored) | set(packer.left_out)
    missing = [
        p
        for p, names in per_pattern.items()
        if not found.intersection(names) and p not in selection.refused
    ]
    if packer.left_out:
        logger.warning("sandbox %s: %d file(s) over the cap left out", dest, len(packer.left_out))
    return PackResult(
        path=dest,
        sha256=sink.digest.hexdigest(),
        size_bytes=sink.size_bytes,
        included=packer.included,
        missing=missing,
        left_out=packer.left_out,
        refused=dict(selection.refused),
    )


__all__ = [
    "PackResult",
    "SandboxLimits",
    "pack",
    "sha256_file",
    "unpack",
    "verify_sha256",
]
