"""Where sandbox archives and log bytes live: one small interface, ``Store``, with two
backends: a local directory (``localdir.py``, the default: the data dir) and an
S3-compatible object store (``s3.py``), which several coordinator replicas share.

Keys are relative paths: ``sandboxes/<ab>/<sha256>`` for archives (written once, never
changed), ``logs/<job id>/<stream>`` and ``logs/pilots/<pilot id>`` for logs (appended by
offset; the database holds how many bytes count, see ``coordinator/logic/logs.py``).
Every method blocks: callers run them in a worker thread, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Optional, Protocol

from coordinator.errors import CoordinatorError

S3_SCHEME = "s3://"
READ_BLOCK_BYTES = 1024 * 1024
UPLOAD_PREFIX = "upload-"
"""Staged uploads are files named ``upload-*`` (see ``coordinator.logic.sandboxes``)."""


class StoreError(CoordinatorError):
    """A store setting that cannot be used."""

    code = "bad_sandbox_store"


class Store(Protocol):
    local_files: bool
    """Whether every object is a local file (``local_path`` never None): downloads then go
    out by ``sendfile`` (``coordinator.api.zerocopy``)."""

    def describe(self) -> str:
        """Where it is, for logs and messages (no credentials)."""
        ...

    def staging_dir(self) -> Path:
        """A local directory for uploads in progress, from which ``put_file`` takes them."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Store the finished file ``path`` under ``key``, all or nothing; ``path`` is
        consumed (moved or deleted)."""
        ...

    def size(self, key: str) -> Optional[int]:
        """The stored object's size, or None if there is none."""
        ...

    def local_path(self, key: str) -> Optional[Path]:
        """The object as a local file (sent with ``sendfile``), or None when it is not one."""
        ...

    def iter_bytes(self, key: str, block_bytes: int = READ_BLOCK_BYTES) -> Iterator[bytes]:
        """The object's bytes in blocks of at most ``block_bytes``; ``NotFound`` if none."""
        ...

    def write_at(self, key: str, offset: int, data: bytes) -> None:
        """Make the appendable object ``key`` hold ``data`` from ``offset`` on, dropping
        whatever it held past ``offset`` (a crashed append's leftovers)."""
        ...

    def read_at(self, key: str, offset: int, size: int, stored_bytes: int) -> bytes:
        """Up to ``size`` bytes of the appendable object from ``offset``, of which the first
        ``stored_bytes`` count; a missing object reads as empty."""
        ...


def prepare_staging(path: Path) -> Path:
    """Create the staging directory and drop the uploads a crash left in it (nothing refers
    to them)."""
    path.mkdir(parents=True, exist_ok=True)
    for leftover in path.glob(UPLOAD_PREFIX + "*"):
        leftover.unlink(missing_ok=True)
    return path


def open_store(spec: str, data_dir: Path) -> Store:
    """The store ``spec`` names: empty for the data dir, a path, or ``s3://BUCKET/PREFIX``."""
    if spec.startswith(S3_SCHEME):
        from coordinator.storage.s3 import S3Store

        return S3Store.from_url(spec, staging_dir=data_dir / "tmp")
    if "://" in spec:
        raise StoreError(
            f"--sandbox-store {spec!r}: give a directory or s3://BUCKET/PREFIX",
            details={"sandbox_store": spec},
        )
    from coordinator.storage.localdir import LocalStore

    return LocalStore(Path(spec).resolve() if spec else data_dir)
