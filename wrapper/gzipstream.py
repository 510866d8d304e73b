"""A gzip writer whose compression level can change between the files it carries.

Outputs are often already compressed (ROOT files, images, tarballs): deflating them again
costs about 20 s per GB on a worker node's core for no gain, while storing them costs next
to nothing. ``GzipStream.set_level`` ends the current deflate segment with a sync flush
(byte-aligned, not final) and starts a new one at the new level; the concatenated segments
form one valid deflate stream, so the result is an ordinary ``.tar.gz`` that every gzip
and tar reader accepts. ``level_for`` picks the level from a probe of a file's start.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from typing import BinaryIO, Protocol

DEFAULT_LEVEL = 6
STORE_LEVEL = 0
PROBE_BYTES = 256 * 1024
MIN_PROBED_BYTES = 64 * 1024
"""Smaller files are always deflated: storing them would save nothing measurable."""
INCOMPRESSIBLE_RATIO = 0.95
"""A probe that deflates to more than this fraction of its size is stored, not deflated."""
_HEADER = b"\x1f\x8b\x08\x00" + b"\x00" * 4 + b"\x00\xff"
"""gzip magic, deflate, no flags, mtime 0 (the same files give the same bytes), unknown OS."""


class Sink(Protocol):
    def write(self, data: bytes) -> int: ...


class GzipStream:
    """Write-only gzip stream into ``sink``; ``close`` writes the trailer (not closing sink)."""

    def __init__(self, sink: Sink, level: int = DEFAULT_LEVEL) -> None:
        self._sink = sink
        self._level = level
        self._deflate = _deflater(level)
        self._crc = 0
        self._size = 0
        self._closed = False
        sink.write(_HEADER)

    @property
    def level(self) -> int:
        return self._level

    def set_level(self, level: int) -> None:
        """Deflate what is written from now on at ``level``."""
        if level == self._level:
            return
        self._sink.write(self._deflate.flush(zlib.Z_SYNC_FLUSH))
        self._deflate = _deflater(level)
        self._level = level

    def write(self, data: bytes) -> int:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        out = self._deflate.compress(data)
        if out:
            self._sink.write(out)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: bytes reach the sink as deflate produces them."""

    def tell(self) -> int:
        """Uncompressed bytes written so far (tarfile asks when it starts)."""
        return self._size

    def read(self, size: int = -1) -> bytes:
        raise io.UnsupportedOperation("GzipStream is write-only")

    def seek(self, pos: int) -> int:
        raise io.UnsupportedOperation("GzipStream cannot seek")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sink.write(self._deflate.flush(zlib.Z_FINISH))
        self._sink.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))


def _deflater(level: int) -> zlib._Compress:
    return zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)


def level_for(handle: BinaryIO, size_bytes: int) -> int:
    """The level to store a file at: ``STORE_LEVEL`` when its start does not compress.

    Reads the probe with ``pread`` so the handle's position is left where it was.
    """
    if size_bytes < MIN_PROBED_BYTES:
        return DEFAULT_LEVEL
    probe = os.pread(handle.fileno(), PROBE_BYTES, 0)
    if not probe:
        return DEFAULT_LEVEL
    deflated = len(zlib.compress(probe, 1))
    return STORE_LEVEL if deflated > INCOMPRESSIBLE_RATIO * len(probe) else DEFAULT_LEVEL
