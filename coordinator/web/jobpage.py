"""Everything the job page shows, gathered through the logic layer in one worker thread."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

from coordinator.errors import CoordinatorError, NotFound
from coordinator.logic import jobs, logs, outputs, registry, search
from coordinator.logic.auth import TokenClaims
from coordinator.logic.jdl import to_jdl
from coordinator.logic.paging import MAX_LIMIT, page_request
from coordinator.logic.sandboxes import SandboxFiles
from coordinator.settings import Settings
from coordinator.storage import Store
from coordinator.store.database import Database
from protocol import LOG_STREAMS, HistoryEntry, JobInfo

LOG_TAIL_BYTES = 256 * 1024
"""The page opens with at most this much of each log; the rest is one link away."""


@dataclasses.dataclass(frozen=True)
class LogTail:
    stream: str
    text: str
    start: int
    """Offset of ``text`` in the whole log (0 unless the log is longer than the tail)."""
    end: int


@dataclasses.dataclass(frozen=True)
class JobPage:
    info: JobInfo
    attributes: dict[str, Any]
    jdl: str
    history: list[HistoryEntry]
    logs: list[LogTail]
    outputs: list[outputs.OutputFile]
    pilot: Optional[registry.PilotInfo]
    parameters: list[tuple[str, str]]


def gather(
    db: Database, settings: Settings, sandboxes: SandboxFiles, claims: TokenClaims, job_id: int
) -> JobPage:
    info = jobs.get_job(db, claims, job_id)  # NotFound for a job the caller may not see
    params = search.SearchParams(search=[search.SearchSpec("JobID", "eq", job_id)])
    found = search.search(db, claims, params, 1, 1).rows
    return JobPage(
        info=info,
        attributes=found[0] if found else {},
        jdl=_jdl(info.description),
        history=jobs.history(db, claims, job_id, page_request(MAX_LIMIT, None, ())).items,
        logs=[_tail(db, sandboxes.store, claims, job_id, stream) for stream in LOG_STREAMS],
        outputs=_outputs(db, sandboxes, claims, job_id) if info.output_sandbox else [],
        pilot=_pilot(db, claims, info.pilot_id),
        parameters=parameters(info),
    )


def _jdl(description: dict[str, Any]) -> str:
    try:
        return to_jdl(description)
    except CoordinatorError:  # a name JDL cannot spell (from YAML or JSON): show the JSON
        return json.dumps(description, indent=2)


def _tail(db: Database, store: Store, claims: TokenClaims, job_id: int, stream: str) -> LogTail:
    files = logs.LogFiles(store)
    size = logs.read_job_log(db, files, claims, job_id, stream, 0, 1).size_bytes
    start = max(size - LOG_TAIL_BYTES, 0)
    piece = logs.read_job_log(db, files, claims, job_id, stream, start, LOG_TAIL_BYTES)
    text = piece.data.decode("utf-8", errors="replace")
    return LogTail(stream=stream, text=text, start=start, end=piece.next_offset)


def _outputs(
    db: Database, sandboxes: SandboxFiles, claims: TokenClaims, job_id: int
) -> list[outputs.OutputFile]:
    try:
        stored = outputs.output_archive(db, sandboxes, claims, job_id)
        return outputs.list_files(sandboxes.local_file(stored))
    except (NotFound, OSError):
        return []


def _pilot(db: Database, claims: TokenClaims, pilot_id: str) -> Optional[registry.PilotInfo]:
    if not pilot_id:
        return None
    try:
        return registry.get_pilot(db, claims, pilot_id)
    except NotFound:
        return None


def parameters(info: JobInfo) -> list[tuple[str, str]]:
    """What the pilot reported about the run, as DIRAC's job parameters."""
    shown: list[tuple[str, str]] = []
    if info.exit_code is not None:
        shown.append(("Exit code", str(info.exit_code)))
    if info.cpu_s is not None:
        shown.append(("CPU time", f"{info.cpu_s:.2f} s"))
    if info.max_rss_bytes is not None:
        shown.append(("Peak memory", f"{info.max_rss_bytes / 2**20:.1f} MiB"))
    for phase, seconds in info.timings_s.items():
        shown.append((f"Time in {phase.replace('_', ' ')}", f"{seconds:.3f} s"))
    if info.gpus:
        shown.append(("GPUs", str(info.gpus)))
    if info.cpu_efficiency is not None:
        cores = f"{info.cores} core(s)"
        shown.append((f"CPU efficiency ({cores})", f"{100 * info.cpu_efficiency:.1f} %"))
    shown.append(("Reschedulings", str(info.reschedule_count)))
    return shown
