"""Unpacking sandboxes: safely, in bounded memory, with size, count, depth and ratio limits.

``unpack`` validates every member itself (Python 3.9 patch releases do not all have
tarfile's ``filter=``) and never writes outside the destination: absolute names, ``..``,
links leading out, devices, fifos and archives over the limits are refused with
``UnsafeSandbox`` naming the member.

An archive is data from someone else, so unpacking it must cost what the archive is, not
what it claims to expand to:

- **Bounded memory.** The compressed stream is read through the ``gzip``/``bz2``/``lzma``
  file objects, whose decompression is bounded by each read's size, and tarfile reads that
  plain stream (``r|``) 64 KiB at a time; file data goes to disk 1 MiB at a time. (tarfile's
  own ``r|gz`` decompresses each 1 MiB of input whole, 1 GiB for a megabyte of zeros, and
  re-copies its whole buffer at every 512-byte header: 787 MB peak for a 256 MiB bomb, and
  minutes for 20,000 small files.) Extended headers (pax, GNU long names) larger than
  ``MAX_HEADER_BYTES`` are refused before tarfile reads them into memory.
- **Ratio.** Past ``ratio_floor_bytes`` written, an archive that has expanded more than
  ``max_ratio`` times the compressed bytes read so far is a decompression bomb and is
  refused; so are archives past ``max_unpacked_bytes``, ``max_files`` or ``max_depth``.
- **Off the heartbeat path.** Unpacking runs in the job's own thread; decompression and
  file writes release the GIL and nothing holds it for more than one 1 MiB chunk, so the
  pilot's loop (heartbeats, other jobs) goes on (``bench/unpack.py`` measures the longest
  pause the other threads see).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
import zlib
from pathlib import Path
from typing import IO, Any, BinaryIO, Optional, cast

from wrapper.config import SandboxLimits
from wrapper.errors import SandboxError, UnsafeSandbox
from wrapper.patterns import inside

GIB = 1024**3
MIB = 1024**2
CHUNK_BYTES = MIB
TAR_READ_BYTES = 64 * 1024
"""tarfile's stream buffer: each header read re-copies what is left of it."""
MAX_HEADER_BYTES = MIB
"""Largest pax or GNU long-name header read into memory (real ones are a few hundred bytes)."""


GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"


class _CountingReader(io.RawIOBase):
    """The archive file as read: counts the compressed bytes consumed (for the ratio)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        self.bytes_read += count or 0
        return count or 0


def _decompressed(raw: _CountingReader, head: bytes) -> BinaryIO:
    """A plain tar stream over ``raw``, decompressed in bounded steps by its magic."""
    # Small read-ahead: what was read counts as consumed for the ratio.
    buffered = io.BufferedReader(raw, TAR_READ_BYTES)
    if head.startswith(GZIP_MAGIC):
        return cast(BinaryIO, gzip.GzipFile(fileobj=buffered, mode="rb"))
    if head.startswith(BZIP2_MAGIC):
        return cast(BinaryIO, bz2.BZ2File(buffered, "rb"))
    if head.startswith(XZ_MAGIC):
        return cast(BinaryIO, lzma.LZMAFile(buffered, "rb"))
    return cast(BinaryIO, buffered)


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses extended headers tarfile would read into memory whole, before it does."""

    _EXTENDED = (
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    )

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        # tarfile's own dispatch (a private method, the same from 3.6 to 3.13): the one
        # place the header's declared size is known before its data is read.
        if self.type in self._EXTENDED and self.size > MAX_HEADER_BYTES:
            raise UnsafeSandbox(self.name[:200], f"extended header of {self.size} bytes")
        member: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]
        return member


def _member_name(raw: str) -> str:
    """The member's name relative to the destination ("" for the root itself)."""
    if raw.startswith("/"):
        raise UnsafeSandbox(raw, "absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeSandbox(raw, "'..' in path")
    return "/".join(parts)


class _Extractor:
    """Writes validated members under ``root`` while counting members and bytes."""

    def __init__(self, root: str, limits: SandboxLimits, source: _CountingReader) -> None:
        self.root = root
        self.limits = limits
        self._source = source
        self.names: list[str] = []
        self.links: list[tuple[str, str]] = []
        self.member_count = 0
        self.unpacked_bytes = 0

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.member_count += 1
        if self.member_count > self.limits.max_files:
            raise UnsafeSandbox(member.name, f"more than {self.limits.max_files} members")
        name = _member_name(member.name)
        if name.count("/") >= self.limits.max_depth:
            raise UnsafeSandbox(name[:200], f"more than {self.limits.max_depth} directory levels")
        if not name:
            if member.isdir():
                return
            raise UnsafeSandbox(member.name, "no file name")
        if member.isdir():
            path = self._directory(name.split("/"), name)
            os.chmod(path, (stat.S_IMODE(member.mode) & 0o777) | 0o700)
        elif member.issym():
            self._symlink(name, member.linkname)
        elif member.islnk():
            self._hardlink(name, member.linkname)
        elif member.isreg() and not member.issparse():
            self._regular(tar, member, name)
        else:
            raise UnsafeSandbox(name, "device, fifo or other special file")
        self.names.append(name)

    def _check_growth(self, name: str) -> None:
        limits = self.limits
        if self.unpacked_bytes > limits.max_unpacked_bytes:
            raise UnsafeSandbox(name, f"more than {limits.max_unpacked_bytes} bytes")
        if limits.max_ratio and self.unpacked_bytes > limits.ratio_floor_bytes:
            ratio = self.unpacked_bytes / max(1, self._source.bytes_read)
            if ratio > limits.max_ratio:
                raise UnsafeSandbox(
                    name,
                    f"expands {ratio:.0f} times ({self.unpacked_bytes} bytes from "
                    f"{self._source.bytes_read}): a decompression bomb",
                )

    def finish(self) -> None:
        """Refuse links that a later member turned into a way out of the tree."""
        for name, path in self.links:
            if os.path.islink(path) and not inside(os.path.realpath(path), self.root):
                os.unlink(path)
                raise UnsafeSandbox(name, "link leads outside the work dir")

    def _directory(self, parts: list[str], member: str) -> str:
        """Create ``parts`` below the root one level at a time; return its real path."""
        current = self.root
        for part in parts:
            candidate = os.path.join(current, part)
            try:
                mode = os.lstat(candidate).st_mode
            except FileNotFoundError:
                os.mkdir(candidate, 0o700)
                current = candidate
                continue
            if stat.S_ISLNK(mode):
                candidate = os.path.realpath(candidate)
                if not inside(candidate, self.root) or not os.path.isdir(candidate):
                    raise UnsafeSandbox(member, "path goes through a link leading outside")
            elif not stat.S_ISDIR(mode):
                raise UnsafeSandbox(member, f"{part!r} is not a directory")
            current = candidate
        return current

    def _target(self, name: str) -> str:
        """Real path for a new non-directory member, with whatever was there removed."""
        parent_name, _, base = name.rpartition("/")
        parent = self._directory(parent_name.split("/") if parent_name else [], name)
        path = os.path.join(parent, base)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return path
        if stat.S_ISDIR(mode):
            raise UnsafeSandbox(name, "would replace a directory")
        os.unlink(path)
        return path

    def _symlink(self, name: str, link: str) -> None:
        if not link or link.startswith("/"):
            raise UnsafeSandbox(name, f"link to absolute path {link!r}")
        path = self._target(name)
        if not inside(os.path.realpath(os.path.join(os.path.dirname(path), link)), self.root):
            raise UnsafeSandbox(name, f"link to {link!r} leads outside the work dir")
        os.symlink(link, path)
        self.links.append((name, path))

    def _hardlink(self, name: str, link: str) -> None:
        try:
            source = os.path.realpath(os.path.join(self.root, _member_name(link)))
        except UnsafeSandbox:
            raise UnsafeSandbox(name, f"hard link to {link!r} outside the work dir") from None
        if not inside(source, self.root) or not os.path.isfile(source):
            raise UnsafeSandbox(name, f"hard link to {link!r}: not a file inside the work dir")
        path = self._target(name)
        try:
            os.link(source, path)
        except OSError:
            with open(source, "rb") as handle:
                self._write(handle, path, name, os.stat(source).st_mode)

    def _regular(self, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> None:
        if self.unpacked_bytes + member.size > self.limits.max_unpacked_bytes:
            raise UnsafeSandbox(name, f"more than {self.limits.max_unpacked_bytes} bytes")
        source = tar.extractfile(member)
        if source is None:
            raise UnsafeSandbox(name, "unreadable member")
        with source:
            self._write(source, self._target(name), name, member.mode, member.mtime)

    def _write(
        self, source: IO[bytes], path: str, name: str, mode: int, mtime: Optional[float] = None
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
                self.unpacked_bytes += len(chunk)
                self._check_growth(name)
                out.write(chunk)
            out.flush()
            os.fchmod(fd, (stat.S_IMODE(mode) & 0o777) | 0o600)
            if mtime is not None:
                os.utime(fd, (mtime, mtime))


def unpack(archive: Path, dest: Path, *, limits: SandboxLimits = SandboxLimits()) -> list[str]:
    """Extract ``archive`` (tar, optionally gzip, bzip2 or xz) into ``dest`` safely; return
    the member names written."""
    size_bytes = archive.stat().st_size
    if size_bytes > limits.max_bytes:
        raise UnsafeSandbox(archive.name, f"archive of {size_bytes} bytes over {limits.max_bytes}")
    dest.mkdir(parents=True, exist_ok=True)
    with open(archive, "rb", buffering=0) as raw:
        head = os.pread(raw.fileno(), 8, 0)
        source = _CountingReader(raw)
        extractor = _Extractor(os.path.realpath(dest), limits, source)
        try:
            with (
                _decompressed(source, head) as stream,
                tarfile.TarFile.open(
                    fileobj=stream, mode="r|", bufsize=TAR_READ_BYTES, tarinfo=_BoundedTarInfo
                ) as tar,
            ):
                _extract_all(tar, extractor)
        except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            if isinstance(exc, OSError) and not _is_format_error(exc):
                raise
            raise SandboxError(f"unreadable sandbox archive {archive.name}: {exc}") from exc
    extractor.finish()
    return extractor.names


def _extract_all(tar: tarfile.TarFile, extractor: _Extractor) -> None:
    while True:
        member = tar.next()
        if member is None:
            return
        extractor.add(tar, member)
        # tarfile keeps every member it read (for random access we never use): 100,000
        # small files would keep 100,000 TarInfo objects. Nothing looks members up by name.
        tar.members.clear()  # type: ignore[attr-defined]


def _is_format_error(exc: OSError) -> bool:
    """Whether an OSError from the decompressors means a corrupt archive (not the disk)."""
    return exc.errno is None or isinstance(exc, gzip.BadGzipFile)
