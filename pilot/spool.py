"""Final job reports kept on disk until the coordinator accepts them.

A job's final state is the one message a pilot must not lose: the payload ran, its output
sandbox is packed, and only the report tells the coordinator. When the coordinator cannot
be reached, the report is written to ``<workdir>/spool/job_<id>.json`` (written to a temporary
file and renamed, so a crash never leaves half a report) and retried later by the loop,
and at the start of the next pilot using the same work dir. An output archive that could
not be uploaded either is kept beside it (``spool/outputs/<sha256>.tar.gz``) and is
uploaded before the report is sent again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from protocol import JobStatusUpdate

logger = logging.getLogger(__name__)

SPOOL_DIR_NAME = "spool"


OUTPUTS_DIR_NAME = "outputs"


@dataclasses.dataclass(frozen=True)
class SpooledReport:
    pilot_id: str
    job_id: int
    update: JobStatusUpdate
    output_archive: str = ""
    """An output archive to upload before the report (its sha256 is the update's
    ``output_sandbox``); "" when there is none or it was delivered."""


class ResultSpool:
    def __init__(self, workdir: Path) -> None:
        self.directory = workdir / SPOOL_DIR_NAME

    def prepare(self) -> None:
        """Make the spool this user's alone, if there is one (an older pilot's)."""
        if self.directory.is_dir():
            _private_dir(self.directory)

    def _path(self, job_id: int) -> Path:
        return self.directory / f"job_{job_id}.json"

    def save(self, report: SpooledReport) -> SpooledReport:
        """Keep ``report`` (and move its output archive into the spool); what was kept."""
        _private_dir(self.directory)
        if report.output_archive:
            kept = self.directory / OUTPUTS_DIR_NAME / f"{report.update.output_sandbox}.tar.gz"
            if Path(report.output_archive) != kept:
                _private_dir(kept.parent)
                os.replace(report.output_archive, kept)
            report = dataclasses.replace(report, output_archive=str(kept))
        record: dict[str, Any] = {
            "pilot_id": report.pilot_id,
            "job_id": report.job_id,
            "update": report.update.to_dict(),
            "output_archive": report.output_archive,
        }
        fd, tmp_name = tempfile.mkstemp(prefix=".job_", dir=str(self.directory))
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(record, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, self._path(report.job_id))
        logger.warning("job %d: final report kept in %s", report.job_id, self._path(report.job_id))
        return report

    def pending(self) -> list[SpooledReport]:
        """Every kept report, oldest job first; unreadable files are set aside, not lost."""
        if not self.directory.is_dir():
            return []
        reports: list[SpooledReport] = []
        for path in sorted(self.directory.glob("job_*.json"), key=lambda p: p.stat().st_mtime):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                reports.append(
                    SpooledReport(
                        pilot_id=str(record["pilot_id"]),
                        job_id=int(record["job_id"]),
                        update=JobStatusUpdate.from_dict(record["update"]),
                        output_archive=str(record.get("output_archive") or ""),
                    )
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.error("spooled report %s is unreadable (%s): set aside", path, exc)
                path.replace(path.with_suffix(".bad"))
        return reports

    def remove(self, report: SpooledReport) -> None:
        if report.output_archive:
            Path(report.output_archive).unlink(missing_ok=True)
        self._path(report.job_id).unlink(missing_ok=True)

    def __len__(self) -> int:
        if not self.directory.is_dir():
            return 0
        return sum(1 for _ in self.directory.glob("job_*.json"))


def _private_dir(path: Path) -> None:
    """Make ``path`` this user's alone (also one an older pilot made): jobs' reports and
    output archives, which a job running under a uid of its own must not read."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        os.chmod(path, 0o700)
