"""Shared pieces for wrapper tests: a directory-backed sandbox transport and job builders."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Union

import pytest

from protocol import JobAssignment
from wrapper.errors import ChecksumMismatch
from wrapper.sandbox import pack, sha256_file

IMAGE_LOCATIONS = (os.path.realpath(tempfile.gettempdir()),)
"""Where the tests' images are (pytest's tmp_path dirs): the tests' ``allowed_images``."""


class DirectoryTransport:
    """Sandbox store in a local directory: the edge of the machine for the wrapper.

    ``fail_uploads`` makes that many upload attempts raise first, like a flaky network.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.fail_uploads = 0
        self.upload_attempts = 0

    def put(self, archive: Path) -> str:
        digest = sha256_file(archive)
        shutil.copyfile(archive, self.root / digest)
        return digest

    def download_sandbox(self, sha256: str, dest: Path) -> None:
        source = self.root / sha256
        if not source.exists():
            raise FileNotFoundError(f"no sandbox {sha256}")
        shutil.copyfile(source, dest)
        actual = sha256_file(dest)  # a transport verifies what it wrote (SandboxTransport)
        if actual != sha256:
            raise ChecksumMismatch(sha256, actual)

    def upload_sandbox(self, path: Path, sha256: str) -> None:
        self.upload_attempts += 1
        if self.fail_uploads > 0:
            self.fail_uploads -= 1
            raise ConnectionError("coordinator unreachable")
        if sha256_file(path) != sha256:
            raise ValueError("checksum mismatch on upload")
        shutil.copyfile(path, self.root / sha256)

    def path_of(self, sha256: str) -> Path:
        return self.root / sha256


FileSpec = Mapping[str, Union[str, bytes]]
SandboxMaker = Callable[[FileSpec], str]


def write_tree(base: Path, files: FileSpec) -> None:
    """Create files (str or bytes content) below ``base``."""
    for name, content in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)


@pytest.fixture
def transport(tmp_path: Path) -> DirectoryTransport:
    return DirectoryTransport(tmp_path / "store")


@pytest.fixture
def make_sandbox(tmp_path: Path, transport: DirectoryTransport) -> SandboxMaker:
    """Pack ``files`` into an input sandbox, store it, return its sha256."""
    counter = [0]

    def make(files: FileSpec) -> str:
        counter[0] += 1
        staging = tmp_path / f"staging{counter[0]}"
        staging.mkdir()
        write_tree(staging, files)
        result = pack(staging, ["."], tmp_path / f"input{counter[0]}.tar.gz")
        return transport.put(result.path)

    return make


def assignment(**fields: object) -> JobAssignment:
    """A job with the wrapper-relevant fields; job_id 7 unless given."""
    values: dict[str, object] = {"job_id": 7, "executable": "/bin/true"}
    values.update(fields)
    return JobAssignment(**values)  # type: ignore[arg-type]
