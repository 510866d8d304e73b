"""Fill a coordinator's data dir below HTTP, with the coordinator's own logic functions.

Submitting a million jobs through ``POST /api/v1/jobs`` takes far longer than matching
them, so the matching and heartbeat benchmarks seed the database in-process with
``coordinator.logic.jobs.submit`` (the function behind the submit endpoint: parametric
expansion, task queues, history, in one transaction per submission), register pilots with
``coordinator.logic.pilots.register`` and claim jobs with the matchmaker's own
``MatchRound``; only then do they start the server on that data dir.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import Connection

from coordinator.logic import jobs as job_logic
from coordinator.logic import pilots as pilot_logic
from coordinator.logic.auth import TokenClaims
from coordinator.logic.matchmaker import MatchRound, pilot_offer
from coordinator.settings import Settings
from coordinator.store import jobs as job_store
from coordinator.store import pilots as pilot_store
from coordinator.store import revisions
from coordinator.store.database import Database
from coordinator.store.schema import utc_timestamp
from protocol import JobStatus, MatchRequest, PilotRegistration, Role, SubmitRequest

logger = logging.getLogger(__name__)

VO = "bench"
OWNERS = ("alice", "bob")
SITES = ("BENCH.A.org", "BENCH.B.org", "BENCH.C.org", "BENCH.D.org", "BENCH.E.org")
PLATFORMS = ("x86_64-el9", "aarch64-el9")
TAG_SETS: tuple[tuple[str, ...], ...] = ((), ("cvmfs",), ("GPU",), ("cvmfs", "GPU"), ("ib",))
ALL_TAGS = ("cvmfs", "GPU", "ib")
GROUPS = 50
MAX_PER_SUBMISSION = 50_000


@dataclasses.dataclass(frozen=True)
class Group:
    """One requirement group: its jobs share a task queue."""

    index: int
    owner: str
    site: str
    platform: str
    tags: tuple[str, ...]
    cores: int
    max_ram_mb: int

    def description(self, count: int) -> dict[str, object]:
        return {
            "Executable": "/bin/true",
            "JobName": f"bench-g{self.index}-%n",
            "Parameters": count,
            "Site": self.site,
            "Platform": self.platform,
            "Tags": list(self.tags),
            "NumberOfProcessors": self.cores,
            "MaxRAM": self.max_ram_mb,
            "CPUTime": 3600 * (1 + self.index % 3),
        }


def groups(count: int = GROUPS) -> list[Group]:
    """``count`` distinct requirement groups over sites, platforms, tags, cores and memory."""
    return [
        Group(
            index=g,
            owner=OWNERS[g % len(OWNERS)],
            site=SITES[g % len(SITES)],
            platform=PLATFORMS[(g // len(SITES)) % len(PLATFORMS)],
            tags=TAG_SETS[(g // 10) % len(TAG_SETS)],
            cores=1 + g % 2,
            max_ram_mb=1000 * (1 + g % 4),
        )
        for g in range(count)
    ]


def claims(subject: str, role: Role) -> TokenClaims:
    expires = datetime.now(timezone.utc) + timedelta(days=1)
    return TokenClaims(subject, VO, role, "", expires, f"seed-{subject}")


def open_database(data_dir: Path, database_url: str = "") -> tuple[Database, Settings]:
    settings = Settings(data_dir=data_dir, database_url=database_url)
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    revisions.check(db)
    return db, settings


def seed_waiting(
    data_dir: Path, total_jobs: int, group_count: int = GROUPS, database_url: str = ""
) -> float:
    """Submit ``total_jobs`` Waiting jobs spread evenly over the groups; returns seconds.
    ``database_url``: another database than the data dir's SQLite file."""
    db, settings = open_database(data_dir, database_url)
    started = time.perf_counter()
    try:
        for position, group in enumerate(groups(group_count)):
            share = total_jobs // group_count + (1 if position < total_jobs % group_count else 0)
            while share > 0:
                count = min(share, MAX_PER_SUBMISSION)
                request = SubmitRequest(
                    description=json.dumps(group.description(count)), format="json"
                )
                job_logic.submit(db, settings, claims(group.owner, Role.USER), request)
                share -= count
    finally:
        db.dispose()
    return time.perf_counter() - started


def pilot_registration(index: int, cores: int = 8) -> PilotRegistration:
    """A pilot node that fits some groups: one site and platform, every tag, 8 cores (and
    2 GB per core) unless told otherwise."""
    return PilotRegistration(
        hostname=f"wn{index:05d}.bench",
        pilot_version="bench",
        site=SITES[index % len(SITES)],
        platform=PLATFORMS[(index // len(SITES)) % len(PLATFORMS)],
        cores=cores,
        memory_mb=2000 * cores,
        time_left_s=86_400,
        tags=list(ALL_TAGS),
    )


def seed_running(
    data_dir: Path, jobs_per_pilot: list[int], database_url: str = "", cores_free: int = 16
) -> list[tuple[str, list[int]]]:
    """Register one pilot per entry, give each up to that many Waiting jobs through the
    matchmaker and mark them Running with a fresh heartbeat; returns ``(pilot id, job ids)``.
    ``cores_free`` (and 4 GB each) is what each pilot offers: the groups' jobs take 1 or 2
    cores, so 16 gives about 12 jobs whatever was asked."""
    db, settings = open_database(data_dir, database_url)
    pilot_claims = claims("bench-pilot", Role.PILOT)
    held: list[tuple[str, list[int]]] = []
    try:
        for index, wanted in enumerate(jobs_per_pilot):
            registration = pilot_registration(index)
            pilot_id = pilot_logic.register(db, settings, pilot_claims, registration).pilot_id
            with db.write() as conn:
                job_ids = _claim_and_start(
                    conn, settings, pilot_claims, pilot_id, wanted, cores_free
                )
            held.append((pilot_id, job_ids))
    finally:
        db.dispose()
    return held


def _claim_and_start(
    conn: Connection,
    settings: Settings,
    pilot_claims: TokenClaims,
    pilot_id: str,
    wanted: int,
    cores_free: int,
) -> list[int]:
    pilot = pilot_store.get_pilot(conn, pilot_id)
    assert pilot is not None
    request = MatchRequest(
        n=wanted,
        cores_free=cores_free,
        memory_free_mb=4000 * cores_free,
        time_left_s=86_400,
        site=pilot["site"],
        platform=pilot["platform"],
        tags=list(ALL_TAGS),
    )
    round_ = MatchRound(conn, settings, pilot_id, pilot_offer(pilot_claims, pilot, request))
    job_ids = [int(job.row["job_id"]) for job in round_.claim(wanted)]
    for job_id in job_ids:
        job_store.change_status(
            conn,
            job_id,
            expected=JobStatus.MATCHED,
            status=JobStatus.RUNNING,
            minor_status="Application",
            application_status="Running",
            source="JobWrapper",
            heartbeat_at=utc_timestamp(),
        )
    return job_ids
