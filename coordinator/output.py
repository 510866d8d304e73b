"""Client side: fetch a job's output sandbox into ``<dir>/<job id>/``, verified and safely."""

from __future__ import annotations

import tempfile
from pathlib import Path

from coordinator.errors import OutputUnavailable, UnsafeSandbox
from pilot.client import CoordinatorClient
from wrapper.errors import WrapperError
from wrapper.sandbox import unpack


def retrieve_output(
    client: CoordinatorClient, job_id: int, out_dir: Path
) -> tuple[Path, list[str]]:
    """Download (checksum verified by the client) and unpack; returns the dir and file names."""
    info = client.job(job_id)
    if not info.output_sandbox:
        raise OutputUnavailable(
            f"job {job_id} has no output sandbox (status {info.status.value})",
            details={"job_id": job_id, "status": info.status.value},
        )
    target = (out_dir / str(job_id)).resolve()
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gridpilot-osb-") as tmp:
        archive = Path(tmp) / "output.tar.gz"
        client.download_sandbox(info.output_sandbox, archive)
        try:
            names = unpack(archive, target)
        except WrapperError as exc:
            raise UnsafeSandbox(
                f"output sandbox of job {job_id} refused: {exc}", details={"job_id": job_id}
            ) from exc
    return target, names
