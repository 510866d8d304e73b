"""The store in a local directory (by default the data dir): archives and logs as files.

Archives are renamed into place from ``<root>/tmp`` (same file system, so a rename is
atomic and a reader never sees half a file). A log is one file appended at an offset.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from coordinator.errors import NotFound
from coordinator.storage import READ_BLOCK_BYTES, prepare_staging


class LocalStore:
    local_files = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self._staging = prepare_staging(root / "tmp")

    def describe(self) -> str:
        return str(self.root)

    def staging_dir(self) -> Path:
        return self._staging

    def _path(self, key: str) -> Path:
        return self.root / key

    def put_file(self, key: str, path: Path) -> None:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, final)

    def size(self, key: str) -> Optional[int]:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def local_path(self, key: str) -> Optional[Path]:
        return self._path(key)

    def iter_bytes(self, key: str, block_bytes: int = READ_BLOCK_BYTES) -> Iterator[bytes]:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"no stored object {key}", details={"key": key})
        return _blocks(path, block_bytes)

    def write_at(self, key: str, offset: int, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        with os.fdopen(fd, "r+b") as stream:
            stream.truncate(offset)
            stream.seek(offset)
            stream.write(data)

    def read_at(self, key: str, offset: int, size: int, stored_bytes: int) -> bytes:
        with contextlib.suppress(FileNotFoundError), open(self._path(key), "rb") as stream:
            stream.seek(offset)
            return stream.read(max(0, min(size, stored_bytes - offset)))
        return b""


def _blocks(path: Path, block_bytes: int) -> Iterator[bytes]:
    with open(path, "rb") as stream:
        while block := stream.read(block_bytes):
            yield block
