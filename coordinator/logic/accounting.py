"""The accounting plots' data: every plot of the portal's Accounting page is one of these
replies, served as JSON at ``/api/v1/accounting/...`` (users: their own jobs; admins: all).

- final statuses per hour: jobs reaching Done, Failed or Killed in each hour;
- running jobs per site: jobs Running or Completing at the end of each hour (from the
  status history, so a job that started and ended within an hour is not counted);
- CPU efficiency by site or by owner: CPU seconds / (payload wall seconds x cores) of the
  jobs finished in the window, the cores being those the job held (its pilot says; a range
  job may hold more than it asked for), not capped at 100 %: a job using more cores than
  it held shows above it;
- failures: Failed jobs per minor status and site.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from sqlalchemy import RowMapping

from coordinator.errors import BadRequest
from coordinator.logic.auth import TokenClaims
from coordinator.store import accounting as accounting_store
from coordinator.store.database import Database
from coordinator.store.schema import utc_timestamp
from protocol import FINAL_STATUSES, JobStatus, Role

BUCKET_S = 3600
MAX_DAYS = 31
FINAL = sorted(status.value for status in FINAL_STATUSES)
ACTIVE = (JobStatus.RUNNING.value, JobStatus.COMPLETING.value)
GROUPINGS = ("site", "owner")


@dataclasses.dataclass(frozen=True)
class HourlySeries:
    bucket_s: int
    buckets: list[str]
    """Each bucket's hour, ``2026-01-31T12`` (UTC), oldest first."""
    series: dict[str, list[int]]
    """One count per bucket for each status (or site)."""


@dataclasses.dataclass(frozen=True)
class EfficiencyRow:
    key: str
    """The site or owner."""
    jobs: int
    cpu_s: float
    wall_core_s: float
    """Payload wall time x cores, summed."""
    efficiency_percent: Optional[float]


@dataclasses.dataclass(frozen=True)
class Efficiency:
    by: str
    days: int
    rows: list[EfficiencyRow]


@dataclasses.dataclass(frozen=True)
class FailureRow:
    minor_status: str
    site: str
    count: int


@dataclasses.dataclass(frozen=True)
class Failures:
    days: int
    rows: list[FailureRow]


@dataclasses.dataclass(frozen=True)
class Window:
    """Hourly buckets covering the last ``days`` days, ending with the current hour."""

    start: datetime
    now: datetime

    @classmethod
    def last(cls, days: int, now: Optional[datetime] = None) -> Window:
        if not 1 <= days <= MAX_DAYS:
            raise BadRequest(f"days is between 1 and {MAX_DAYS}", details={"days": days})
        moment = now or datetime.now(timezone.utc)
        top = moment.replace(minute=0, second=0, microsecond=0)
        return cls(start=top - timedelta(days=days) + timedelta(hours=1), now=moment)

    @property
    def hours(self) -> list[datetime]:
        count = int((self.now - self.start).total_seconds() // BUCKET_S) + 1
        return [self.start + timedelta(hours=i) for i in range(count)]

    @property
    def labels(self) -> list[str]:
        return [hour.strftime("%Y-%m-%dT%H") for hour in self.hours]

    @property
    def since(self) -> str:
        return utc_timestamp(self.start)


def held_cores(accounting: Mapping[str, Any], requested: Any) -> int:
    """The cores a job ran on: its pilot's word (``JobStatusUpdate.cores``), else the
    cores it asked for (a range job may have had more)."""
    for value in (accounting.get("cores"), requested):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 1


def efficiency(cpu_s: Any, wall_s: Any, cores: int) -> Optional[float]:
    """CPU seconds / (payload wall seconds x cores), a fraction; None without both times."""
    if not isinstance(cpu_s, (int, float)) or not isinstance(wall_s, (int, float)) or wall_s <= 0:
        return None
    return float(cpu_s) / (float(wall_s) * max(cores, 1))


def _scope(claims: TokenClaims) -> tuple[Optional[str], Optional[str]]:
    if claims.role is Role.ADMIN:
        return None, None
    return claims.subject, claims.vo


def final_statuses(db: Database, claims: TokenClaims, days: int) -> HourlySeries:
    window = Window.last(days)
    with db.read() as conn:
        counts = accounting_store.statuses_per_hour(conn, FINAL, window.since, *_scope(claims))
    index = {label: i for i, label in enumerate(window.labels)}
    series = {status: [0] * len(index) for status in FINAL}
    for hour, status, count in counts:
        if hour in index:
            series[status][index[hour]] += count
    return HourlySeries(BUCKET_S, window.labels, series)


def running_by_site(db: Database, claims: TokenClaims, days: int) -> HourlySeries:
    window = Window.last(days)
    with db.read() as conn:
        rows = accounting_store.histories_touching(conn, window.since, ACTIVE, *_scope(claims))
    samples = [min(hour + timedelta(hours=1), window.now) for hour in window.hours]
    marks = [utc_timestamp(sample) for sample in samples]
    series: dict[str, list[int]] = {}
    for site, start, end in running_intervals(rows, utc_timestamp(window.now)):
        counts = series.setdefault(site, [0] * len(marks))
        for i, mark in enumerate(marks):
            if start <= mark < end:
                counts[i] += 1
    return HourlySeries(BUCKET_S, window.labels, dict(sorted(series.items())))


def running_intervals(rows: Sequence[RowMapping], now: str) -> list[tuple[str, str, str]]:
    """(site, from, until) of each stretch a job spent Running or Completing, from its
    history entries in order (a stretch still open ends ``now``)."""
    intervals: list[tuple[str, str, str]] = []
    by_job: dict[int, list[RowMapping]] = defaultdict(list)
    for row in rows:
        by_job[int(row["job_id"])].append(row)
    for entries in by_job.values():
        began: Optional[str] = None
        for entry in entries:
            active = entry["status"] in ACTIVE
            if active and began is None:
                began = entry["at"]
            elif not active and began is not None:
                intervals.append((entry["site"], began, entry["at"]))
                began = None
        if began is not None:
            intervals.append((entries[-1]["site"], began, now))
    return intervals


def cpu_efficiency(db: Database, claims: TokenClaims, days: int, by: str) -> Efficiency:
    if by not in GROUPINGS:
        raise BadRequest(f"by is one of {', '.join(GROUPINGS)}", details={"by": by})
    window = Window.last(days)
    with db.read() as conn:
        rows = accounting_store.finished_since(conn, FINAL, window.since, *_scope(claims))
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for row in rows:
        used = json.loads(row["accounting"] or "{}")
        cpu_s = used.get("cpu_s")
        wall_s = (used.get("timings_s") or {}).get("payload")
        if cpu_s is None or not wall_s:
            continue  # killed before it ran, or no report: nothing to measure
        total = totals[str(row[by])]
        total[0] += 1
        total[1] += float(cpu_s)
        total[2] += float(wall_s) * held_cores(used, row["cores"])
    result = [
        EfficiencyRow(
            key=key,
            jobs=int(jobs),
            cpu_s=round(cpu, 3),
            wall_core_s=round(wall, 3),
            efficiency_percent=round(100.0 * cpu / wall, 1) if wall else None,
        )
        for key, (jobs, cpu, wall) in sorted(totals.items())
    ]
    return Efficiency(by=by, days=days, rows=result)


def failures(db: Database, claims: TokenClaims, days: int) -> Failures:
    window = Window.last(days)
    with db.read() as conn:
        rows = accounting_store.finished_since(
            conn, [JobStatus.FAILED.value], window.since, *_scope(claims)
        )
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        counts[(row["minor_status"], row["site"])] += 1
    table = [
        FailureRow(minor_status=minor, site=site, count=count)
        for (minor, site), count in sorted(counts.items(), key=lambda item: -item[1])
    ]
    return Failures(days=days, rows=table)
