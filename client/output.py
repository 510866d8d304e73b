"""Fetch a job's output sandbox into ``<dir>/<job id>/``, checksum verified, unpacked safely."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from client.api import UserClient
from client.errors import InputError, Refused
from protocol import ErrorCode
from wrapper.errors import WrapperError
from wrapper.sandbox import unpack


def check_output_dir(out_dir: Path) -> Path:
    """``out_dir`` created if needed (as DIRAC's get-output does), before anything is
    downloaded; a path that cannot be a writable directory is refused."""
    where = out_dir.expanduser()
    try:
        where.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise InputError(f"cannot write into {out_dir}: it is not a directory") from exc
    except OSError as exc:
        raise InputError(f"cannot write into {out_dir}: {exc.strerror or exc}") from exc
    if not os.access(where, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into {out_dir}: permission denied")
    return where


def output_dir(out_dir: Path, job_id: int) -> Path:
    """``out_dir/<job id>``, created."""
    target = check_output_dir(out_dir) / str(job_id)
    try:
        target.mkdir(exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write into {target}: {exc.strerror or exc}") from exc
    return target.resolve()


def retrieve_output(client: UserClient, job_id: int, out_dir: Path) -> tuple[Path, list[str]]:
    """Download and unpack; returns the dir and the file names."""
    info = client.job(job_id)
    if not info.output_sandbox:
        raise Refused(
            f"job {job_id} has no output sandbox (it is {info.status.value})",
            code=ErrorCode.NO_OUTPUT.value,
            details={"job_id": job_id, "status": info.status.value},
        )
    target = output_dir(out_dir, job_id)
    with tempfile.TemporaryDirectory(prefix="gridpilot-osb-") as tmp:
        archive = Path(tmp) / "output.tar.gz"
        client.download_sandbox(info.output_sandbox, archive)
        try:
            names = unpack(archive, target)
        except WrapperError as exc:
            raise Refused(
                f"the output sandbox of job {job_id} was refused as unsafe: {exc}",
                code=ErrorCode.UNSAFE_SANDBOX.value,
                details={"job_id": job_id},
            ) from exc
        except OSError as exc:
            raise InputError(f"cannot write into {target}: {exc.strerror or exc}") from exc
    return target, names
