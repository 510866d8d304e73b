"""Sandbox archives, addressed by sha256 (``sandboxes/<ab>/<sha256>`` in the store: the
data dir, another directory or an S3 bucket, see ``coordinator.storage``), and who owns them.

An upload is streamed to a temporary file in the store's staging directory while it is
hashed and counted, then handed to the store (renamed into place, or sent to S3); it is
never held whole in memory. Bytes the store has already are hashed (the uploader proves
they hold them) but not stored again.
Disk writes and store calls run in a worker thread so they never stall the event loop.
Two ways in: ``receive`` takes the body as ASGI messages (FastAPI's route), and
``receive_blocking`` reads it in a worker thread (the socket lane of large uploads,
``coordinator.api.socketupload``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import BinaryIO, Optional

import anyio.to_thread
from sqlalchemy import Connection

from coordinator.errors import ChecksumMismatch, NotFound, TooLarge
from coordinator.logic.auth import TokenClaims
from coordinator.storage import UPLOAD_PREFIX, Store
from coordinator.store import jobs as job_store
from coordinator.store import sandboxes as sandbox_store
from coordinator.store.database import Database
from coordinator.store.precompiled import Row
from protocol import Role

logger = logging.getLogger(__name__)

WRITE_BATCH_BYTES = 1024 * 1024
BODY_BATCH_BYTES = 256 * 1024
"""Each of the two buffers of a body read in a worker thread (``receive_blocking``). Two of
1 MiB cost 1.5 to 3 times the coordinator's CPU per upload of two of 256 KiB (512 MB,
alternating runs: the kernel's copies in and out of buffers that no longer stay in the
CPU's cache, as system time)."""


@dataclasses.dataclass(frozen=True)
class StoredSandbox:
    sha256: str
    size_bytes: int
    path: Optional[Path] = None
    """The archive as a local file, when the store keeps it as one (sent with sendfile)."""


class SandboxFiles:
    """Sandbox archives in the store (``coordinator.storage``), addressed by sha256."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def key_for(sha256: str) -> str:
        return f"sandboxes/{sha256[:2]}/{sha256}"

    def is_stored(self, sha256: str) -> bool:
        return self.store.size(self.key_for(sha256)) is not None

    def existing(self, sha256: str) -> StoredSandbox:
        key = self.key_for(sha256)
        size = self.store.size(key)
        if size is None:
            raise NotFound(f"no sandbox {sha256}", details={"sha256": sha256})
        return StoredSandbox(sha256=sha256, size_bytes=size, path=self.store.local_path(key))

    def iter_bytes(self, stored: StoredSandbox) -> Iterator[bytes]:
        return self.store.iter_bytes(self.key_for(stored.sha256))

    def local_file(self, stored: StoredSandbox) -> Path:
        """The archive as a local file, for reading inside it (the portal's output files).
        From a store that keeps no local files (S3), a copy in the staging directory named
        ``copy-<sha256>``: the bytes never change, so a copy made once is good for ever
        (and costs its size on the coordinator's disk until removed)."""
        if stored.path is not None:
            return stored.path
        copy = self.store.staging_dir() / f"copy-{stored.sha256}"
        if not copy.exists():
            fd, tmp_name = tempfile.mkstemp(prefix=UPLOAD_PREFIX, dir=self.store.staging_dir())
            with os.fdopen(fd, "wb") as out:
                for block in self.iter_bytes(stored):
                    out.write(block)
            os.replace(tmp_name, copy)
        return copy

    async def receive(
        self, chunks: AsyncIterator[bytes], expected_sha256: str, max_bytes: int, *, keep: bool
    ) -> StoredSandbox:
        """Store the streamed bytes if they hash to ``expected_sha256`` and fit in
        ``max_bytes``; otherwise raise ``ChecksumMismatch`` / ``TooLarge`` and keep nothing.
        ``keep=False`` (the store has these bytes already): check them, store nothing."""
        if not keep:
            digest, size = await _copy(chunks, None, max_bytes)
            _check_digest(expected_sha256, digest)
            return StoredSandbox(sha256=digest, size_bytes=size)
        with self._staged() as (out, tmp_path):
            digest, size = await _copy(chunks, out, max_bytes)
            await anyio.to_thread.run_sync(_flush, out)
            out.close()
            return await anyio.to_thread.run_sync(
                self._keep, expected_sha256, digest, size, tmp_path
            )

    def receive_blocking(
        self, body: BodyReader, size_bytes: int, expected_sha256: str, *, keep: bool
    ) -> StoredSandbox:
        """``receive`` for a body of a declared ``size_bytes`` (within the limit), read by
        ``body`` in this (a worker) thread: ``coordinator.api.socketupload``'s lane."""
        if not keep:
            digest = _hash_body(body, size_bytes, None)
            _check_digest(expected_sha256, digest)
            return StoredSandbox(sha256=digest, size_bytes=size_bytes)
        with self._staged() as (out, tmp_path):
            digest = _hash_body(body, size_bytes, out.fileno())
            _flush(out)
            out.close()
            return self._keep(expected_sha256, digest, size_bytes, tmp_path)

    @contextlib.contextmanager
    def _staged(self) -> Iterator[tuple[BinaryIO, Path]]:
        """A new file in the staging directory, removed at the end unless stored."""
        fd, tmp_name = tempfile.mkstemp(prefix=UPLOAD_PREFIX, dir=self.store.staging_dir())
        tmp_path = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                yield out, tmp_path
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()

    def _keep(self, expected_sha256: str, digest: str, size: int, tmp_path: Path) -> StoredSandbox:
        """The staged, flushed file into the store if its bytes hashed to the digest."""
        _check_digest(expected_sha256, digest)
        key = self.key_for(digest)
        self.store.put_file(key, tmp_path)
        return StoredSandbox(sha256=digest, size_bytes=size, path=self.store.local_path(key))


def _check_digest(expected: str, actual: str) -> None:
    if actual != expected:
        raise ChecksumMismatch(
            "the uploaded bytes do not hash to the announced sha256",
            details={"expected": expected, "actual": actual},
        )


async def _copy(
    chunks: AsyncIterator[bytes], out: Optional[BinaryIO], max_bytes: int
) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    pending: list[bytes] = []
    pending_bytes = 0
    # One batch is hashed and written in a thread while the next one is received: hashlib
    # and file writes release the GIL, so the two overlap (best of six 512 MB uploads:
    # 1.24 s, against 1.55 s when each write was awaited before reading on).
    writing: Optional[asyncio.Future[None]] = None
    loop = asyncio.get_running_loop()
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(
                    f"sandbox is larger than the limit of {max_bytes} bytes",
                    details={"max_bytes": max_bytes},
                )
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= WRITE_BATCH_BYTES:
                if writing is not None:
                    await writing
                writing = loop.run_in_executor(None, _write, out, hasher, pending)
                pending, pending_bytes = [], 0
        if writing is not None:
            await writing
        if pending:
            await anyio.to_thread.run_sync(_write, out, hasher, pending)
    finally:
        if writing is not None and not writing.done():
            # Failed or cancelled mid-way: the caller closes ``out`` only after this write.
            await asyncio.wait({writing})
    return hasher.hexdigest(), size


def _write(out: Optional[BinaryIO], hasher: hashlib._Hash, pieces: list[bytes]) -> None:
    for piece in pieces:
        hasher.update(piece)
        if out is not None:
            out.write(piece)


BodyReader = Callable[[memoryview], int]
"""Fills the start of a buffer with the next bytes of a request body and says how many
(at least one: it raises when the body ends early), like ``socket.recv_into``."""


def _hash_body(body: BodyReader, size_bytes: int, out_fd: Optional[int]) -> str:
    """The sha256 of ``size_bytes`` bytes read by ``body``, written to ``out_fd`` if given.

    Two buffers reused in turn: one is filled while the other is hashed and written by a
    second thread (hashlib and ``os.write`` release the GIL), so the three overlap with no
    copy of the bytes in Python."""
    hasher = hashlib.sha256()
    buffers = [bytearray(BODY_BATCH_BYTES), bytearray(BODY_BATCH_BYTES)]
    left = size_bytes
    turn = 0
    with ThreadPoolExecutor(1, thread_name_prefix="sandbox-hash") as hashing:
        consumed: Optional[Future[None]] = None
        try:
            while left > 0:
                batch = memoryview(buffers[turn])[: min(BODY_BATCH_BYTES, left)]
                filled = 0
                while filled < len(batch):
                    filled += body(batch[filled:])
                if consumed is not None:
                    consumed.result()
                consumed = hashing.submit(_consume, hasher, batch, out_fd)
                left -= filled
                turn = 1 - turn
            if consumed is not None:
                consumed.result()
        finally:
            if consumed is not None:
                wait([consumed])
    return hasher.hexdigest()


def _consume(hasher: hashlib._Hash, batch: memoryview, out_fd: Optional[int]) -> None:
    hasher.update(batch)
    while out_fd is not None and batch:
        batch = batch[os.write(out_fd, batch) :]


def _flush(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


def record_upload(db: Database, claims: TokenClaims, stored: StoredSandbox) -> bool:
    """Remember the sandbox and that this caller owns it; True if it was not theirs yet.

    An identical upload by someone else makes them an owner too: the bytes are stored
    once, each owner refers to them, and neither learns that the other exists.
    """
    with db.write() as conn:
        return sandbox_store.record_upload(
            conn, stored.sha256, stored.size_bytes, claims.subject, claims.vo
        )


def check_owned(conn: Connection, claims: TokenClaims, digests: Sequence[str]) -> None:
    """``NotFound`` unless the caller owns every sandbox in ``digests``.

    A sandbox that exists but is someone else's gets the same answer as one that does not
    exist, so a digest learnt elsewhere neither grants access nor confirms anything.
    """
    absent = sandbox_store.not_owned(conn, digests, claims.subject, claims.vo)
    if absent:
        raise NotFound(
            f"no sandbox {absent[0]} among yours: upload it before naming it",
            details={"missing": absent},
        )


def claim_output(conn: Connection, claims: TokenClaims, job: Row, digest: str) -> None:
    """Make ``digest`` the output sandbox of ``job``, reported by the pilot of ``claims``:
    the pilot must have uploaded it itself, and from then on it is the job owner's too."""
    check_owned(conn, claims, [digest])
    job_id = int(job["job_id"])
    if digest not in job_store.sandboxes_of(conn, job_id, job_store.OUT):
        job_store.link_sandboxes(conn, [job_id], job_store.OUT, [digest])
    sandbox_store.add_owner(conn, digest, str(job["owner"]), str(job["vo"]))


def readable(db: Database, files: SandboxFiles, claims: TokenClaims, sha256: str) -> StoredSandbox:
    """The stored sandbox if the caller may read it, else ``NotFound``.

    Admins read all; owners read theirs (uploaders, and job owners their jobs' outputs);
    pilots read the inputs and outputs of their VO's jobs held by pilots registered with
    their token. Knowing a digest grants nothing.
    """
    with db.read() as conn:
        allowed = sandbox_store.get_sandbox(conn, sha256) is not None and (
            claims.role is Role.ADMIN
            or sandbox_store.owned_by(conn, sha256, claims.subject, claims.vo)
            or (
                claims.role is Role.USER
                and sandbox_store.output_of_owner(conn, sha256, claims.subject, claims.vo)
            )
            or (
                claims.role is Role.PILOT
                and sandbox_store.linked_to_pilot_subject(conn, sha256, claims.subject, claims.vo)
            )
        )
    if not allowed:
        raise NotFound(f"no sandbox {sha256}", details={"sha256": sha256})
    return files.existing(sha256)
