"""The store in an S3-compatible bucket (AWS S3, Ceph RGW, MinIO, SeaweedFS...), through
boto3, shared by every coordinator replica: ``--sandbox-store s3://BUCKET/PREFIX``.

The endpoint, region and credentials come from the environment as for any AWS tool
(``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL_S3``, ``AWS_DEFAULT_REGION``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, or a profile), never from our settings.

- Archives are uploaded from a local staging file once their sha256 is verified
  (multipart above 8 MiB, at most ``TRANSFER_CONCURRENCY`` parts in memory at once) and
  read back as a stream of 1 MiB blocks, so memory stays bounded both ways.
- A log is a set of objects, one per append, named by the offset it starts at
  (``<key>/<offset, 20 digits>``). The database says how many bytes count; a reader walks
  the chain from offset 0 (each piece starts where the one before ended), so pieces left by
  an append that crashed before its commit, or by a log cleared at a reschedule, are never
  read: the next append at that offset replaces them.
- A store that cannot be reached (connection refused, timeouts, 5xx) raises
  ``Unavailable``: the request answers 503 and pilots retry it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from coordinator.errors import NotFound, Unavailable
from coordinator.storage import READ_BLOCK_BYTES, S3_SCHEME, StoreError, prepare_staging

logger = logging.getLogger(__name__)

PART_BYTES = 8 * 1024 * 1024
TRANSFER_CONCURRENCY = 4
OFFSET_DIGITS = 20
MISSING = ("404", "NoSuchKey", "NotFound")


class S3Store:
    local_files = False

    def __init__(self, bucket: str, prefix: str, staging_dir: Path, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._staging = prepare_staging(staging_dir)
        self._client = client
        self._transfer = TransferConfig(
            multipart_threshold=PART_BYTES,
            multipart_chunksize=PART_BYTES,
            max_concurrency=TRANSFER_CONCURRENCY,
        )

    @classmethod
    def from_url(cls, url: str, staging_dir: Path) -> S3Store:
        parsed = urlparse(url)
        if not url.startswith(S3_SCHEME) or not parsed.netloc:
            raise StoreError(f"--sandbox-store {url!r}: expected s3://BUCKET/PREFIX")
        prefix = parsed.path.strip("/")
        config = Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=60,
            # Path-style addressing works with every S3 server; virtual hosts need DNS.
            s3={"addressing_style": "path"},
        )
        client = boto3.session.Session().client("s3", config=config)
        return cls(parsed.netloc, f"{prefix}/" if prefix else "", staging_dir, client)

    def describe(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}"

    def staging_dir(self) -> Path:
        return self._staging

    def _key(self, key: str) -> str:
        return self.prefix + key

    def put_file(self, key: str, path: Path) -> None:
        try:
            with _reachable(self):
                self._client.upload_file(
                    str(path), self.bucket, self._key(key), Config=self._transfer
                )
        finally:
            path.unlink(missing_ok=True)

    def size(self, key: str) -> Optional[int]:
        with _reachable(self):
            try:
                head = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if _code(exc) in MISSING:
                    return None
                raise
        return int(head["ContentLength"])

    def local_path(self, key: str) -> Optional[Path]:
        return None

    def iter_bytes(self, key: str, block_bytes: int = READ_BLOCK_BYTES) -> Iterator[bytes]:
        # Asked at once (a missing object or an unreachable store is an error response);
        # read as the caller iterates.
        return _blocks(self._get(key)["Body"], block_bytes)

    def _get(self, key: str, **ranged: Any) -> Any:
        with _reachable(self):
            try:
                return self._client.get_object(Bucket=self.bucket, Key=self._key(key), **ranged)
            except ClientError as exc:
                if _code(exc) in MISSING:
                    raise NotFound(f"no stored object {key}", details={"key": key}) from exc
                raise

    def write_at(self, key: str, offset: int, data: bytes) -> None:
        with _reachable(self):
            self._client.put_object(
                Bucket=self.bucket, Key=self._key(_piece(key, offset)), Body=data
            )

    def read_at(self, key: str, offset: int, size: int, stored_bytes: int) -> bytes:
        end = min(offset + size, stored_bytes)
        if end <= offset:
            return b""
        pieces = self._pieces(key)
        out: list[bytes] = []
        position = 0
        while position < end:
            length = pieces.get(position)
            if not length:
                logger.warning("log %s: no piece at byte %d of %d", key, position, stored_bytes)
                break
            piece_end = position + length
            if piece_end > offset:
                first = max(offset, position) - position
                last = min(end, piece_end) - position - 1
                body = self._get(_piece(key, position), Range=f"bytes={first}-{last}")["Body"]
                with contextlib.closing(body):
                    out.append(body.read())
            position = piece_end
        return b"".join(out)

    def _pieces(self, key: str) -> dict[int, int]:
        """``offset -> size`` of every stored piece of the log ``key``."""
        prefix = self._key(key) + "/"
        found: dict[int, int] = {}
        with _reachable(self):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    name = item["Key"][len(prefix) :]
                    if name.isdigit():
                        found[int(name)] = int(item["Size"])
        return found


def _blocks(body: Any, block_bytes: int) -> Iterator[bytes]:
    with contextlib.closing(body):
        yield from body.iter_chunks(block_bytes)


def _piece(key: str, offset: int) -> str:
    return f"{key}/{offset:0{OFFSET_DIGITS}d}"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _reachable(store: S3Store) -> Iterator[None]:
    """Connection failures, timeouts and server errors of S3 as ``Unavailable`` (503)."""
    try:
        yield
    except ClientError as exc:
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if status >= 500 or _code(exc) in ("SlowDown", "ServiceUnavailable", "RequestTimeout"):
            raise _unavailable(store, exc) from exc
        raise
    except BotoCoreError as exc:
        raise _unavailable(store, exc) from exc


def _unavailable(store: S3Store, exc: Exception) -> Unavailable:
    logger.warning("sandbox store %s unavailable: %s", store.describe(), exc)
    return Unavailable(
        "the sandbox store cannot be reached just now; retry later",
        details={"store": store.describe()},
    )
