"""A sandbox download is hashed once, by the client as it writes: a tampered sandbox at the
coordinator fails the job as a checksum mismatch (an infrastructure failure)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pilot.client import CoordinatorClient
from pilot.errors import CoordinatorRejected
from protocol import JobStatus
from tests.conftest import RunningCoordinator
from tests.wrapper.conftest import assignment
from wrapper.errors import ChecksumMismatch
from wrapper.job import JobRun, WrapperConfig
from wrapper.sandbox import pack


def _tampered_sandbox(coordinator: RunningCoordinator, client: CoordinatorClient, tmp: Path) -> str:
    staging = tmp / "staging"
    staging.mkdir()
    (staging / "run.sh").write_text("#!/bin/sh\ntouch ran\n")
    packed = pack(staging, ["."], tmp / "input.tar.gz")
    client.upload_sandbox(packed.path, packed.sha256)
    stored = coordinator.data_dir / "sandboxes" / packed.sha256[:2] / packed.sha256
    stored.write_bytes(b"not the bytes that were uploaded")
    return packed.sha256


def test_a_tampered_sandbox_is_refused_by_the_client_and_fails_the_job(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    client = CoordinatorClient(coordinator.url, coordinator.token())
    sha256 = _tampered_sandbox(coordinator, client, tmp_path)

    archive = tmp_path / "download.tar.gz"
    with pytest.raises(ChecksumMismatch) as refused:
        client.download_sandbox(sha256, archive)
    assert isinstance(refused.value, CoordinatorRejected)  # users' commands catch this one
    assert (
        refused.value.actual_sha256
        == hashlib.sha256(b"not the bytes that were uploaded").hexdigest()
    )
    assert not archive.exists()

    workdir = tmp_path / "job_7"
    job = assignment(executable="run.sh", input_sandboxes=[sha256])
    outcome = JobRun(job, workdir, client, WrapperConfig()).run()
    client.close()
    assert outcome.status == JobStatus.FAILED
    assert outcome.minor_status == "Input Sandbox Checksum Mismatch"
    assert outcome.infrastructure_error
    assert not (workdir / "ran").exists()
