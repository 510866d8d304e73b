"""Prometheus metrics, written out by hand in the text exposition format (version 0.0.4).

Counters and the match-latency histogram live in this process (``Metrics``) and start from
zero when the coordinator starts, as Prometheus expects of counters. Gauges (jobs by
status, pilots, task queues, heartbeat lag) are read from the database at each scrape, so
they are right after a restart and across several coordinators sharing one database.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone

from coordinator.store import stats
from coordinator.store.database import Database
from protocol import JobStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MATCH_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
HEARTBEAT_LAG_BUCKETS_S = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class Histogram:
    """Cumulative buckets, sum and count, as a Prometheus histogram. Not thread-safe alone:
    ``Metrics`` holds the lock."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * len(self.buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1
        self.total += value
        self.count += 1


class Metrics:
    """The coordinator process's counters; one per application, shared by all requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.match_requests = {"matched": 0, "empty": 0}
        self.jobs_matched = 0
        self.heartbeats = 0
        self.pilot_heartbeats = 0
        self.match_duration = Histogram(MATCH_BUCKETS_S)
        self.hot_requests: dict[tuple[str, str], int] = {}

    def observe_match(self, duration_s: float, jobs: int) -> None:
        with self._lock:
            self.match_requests["matched" if jobs else "empty"] += 1
            self.jobs_matched += jobs
            self.match_duration.observe(duration_s)

    def count_heartbeat(self, jobs: int = 1, *, batched: bool = False) -> None:
        """``jobs`` leases renewed by one request (a pilot's batch when ``batched``)."""
        with self._lock:
            self.heartbeats += jobs
            if batched:
                self.pilot_heartbeats += 1

    def count_hot_request(self, route: str, thread: str) -> None:
        """One request of a hot route served below FastAPI (``coordinator.api.hotpath``),
        on the event loop's ``thread`` ("loop") or in a worker thread ("worker")."""
        with self._lock:
            key = (route, thread)
            self.hot_requests[key] = self.hot_requests.get(key, 0) + 1

    def lines(self) -> list[str]:
        with self._lock:
            out = _family(
                "gridpilot_match_requests_total",
                "counter",
                "Match requests served, by whether they got a job.",
                [(f'{{result="{result}"}}', n) for result, n in self.match_requests.items()],
            )
            out += _family(
                "gridpilot_jobs_matched_total",
                "counter",
                "Jobs given to pilots.",
                [("", self.jobs_matched)],
            )
            out += _histogram(
                "gridpilot_match_duration_seconds",
                "Time to serve one match request, database transaction included.",
                self.match_duration,
            )
            out += _family(
                "gridpilot_heartbeats_total",
                "counter",
                "Job heartbeats accepted.",
                [("", self.heartbeats)],
            )
            out += _family(
                "gridpilot_pilot_heartbeats_total",
                "counter",
                "Batched heartbeat requests (one per pilot and interval) served.",
                [("", self.pilot_heartbeats)],
            )
            out += _family(
                "gridpilot_hot_path_requests_total",
                "counter",
                "Pilots' hot requests served below FastAPI, by route and by the thread whose "
                "turn it was to write: the event loop's, or a worker's when another write "
                "was under way.",
                [
                    (_labels(route=route, thread=thread), n)
                    for (route, thread), n in sorted(self.hot_requests.items())
                ],
            )
        return out


@dataclasses.dataclass(frozen=True)
class StoreSnapshot:
    """What the database says at scrape time."""

    jobs_by_status: Mapping[tuple[str, str], int]
    heartbeat_lags_s: Sequence[float]
    pilots_by_vo: Mapping[str, int]
    task_queues_by_vo: Mapping[str, int]


def snapshot(db: Database, now: datetime | None = None) -> StoreSnapshot:
    moment = now or datetime.now(timezone.utc)
    with db.read() as conn:
        last_seen = stats.last_signs_of_life(conn)
        return StoreSnapshot(
            jobs_by_status=stats.jobs_by_status(conn),
            heartbeat_lags_s=[
                max(0.0, (moment - datetime.fromisoformat(at)).total_seconds()) for at in last_seen
            ],
            pilots_by_vo=stats.pilots_by_vo(conn),
            task_queues_by_vo=stats.task_queues_by_vo(conn),
        )


def exposition(metrics: Metrics, store: StoreSnapshot) -> str:
    """The whole ``/metrics`` page."""
    vos = sorted({vo for vo, _status in store.jobs_by_status})
    job_samples = [
        (_labels(vo=vo, status=status.value), store.jobs_by_status.get((vo, status.value), 0))
        for vo in vos
        for status in JobStatus
    ]
    lags = sorted(store.heartbeat_lags_s)
    out = _family("gridpilot_jobs", "gauge", "Jobs by VO and status.", job_samples)
    out += _family(
        "gridpilot_pilots",
        "gauge",
        "Pilots registered, by VO.",
        [(_labels(vo=vo), n) for vo, n in sorted(store.pilots_by_vo.items())],
    )
    out += _family(
        "gridpilot_task_queues",
        "gauge",
        "Task queues (groups of jobs with the same requirements and owner), by VO.",
        [
            (_labels(vo=vo), store.task_queues_by_vo.get(vo, 0))
            for vo in sorted(set(vos) | set(store.task_queues_by_vo))
        ],
    )
    out += _family(
        "gridpilot_heartbeat_lag_max_seconds",
        "gauge",
        "Longest time since a Running job's last heartbeat (or start).",
        [("", lags[-1] if lags else 0.0)],
    )
    out += _family(
        "gridpilot_heartbeat_lag_jobs",
        "gauge",
        "Running jobs whose last heartbeat is at most `le` seconds old.",
        [(_labels(le=_number(b)), _at_most(lags, b)) for b in HEARTBEAT_LAG_BUCKETS_S]
        + [(_labels(le="+Inf"), len(lags))],
    )
    return "\n".join(out + metrics.lines()) + "\n"


def _at_most(sorted_values: Sequence[float], bound: float) -> int:
    return sum(1 for value in sorted_values if value <= bound)


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]
) -> list[str]:
    lines = [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{labels} {_number(value)}" for labels, value in samples]
    return lines


def _histogram(name: str, help_text: str, histogram: Histogram) -> list[str]:
    samples: list[tuple[str, float]] = [
        (f"_bucket{_labels(le=_number(bound))}", count)
        for bound, count in zip(histogram.buckets, histogram.counts)
    ]
    samples += [
        (f"_bucket{_labels(le='+Inf')}", histogram.count),
        ("_sum", histogram.total),
        ("_count", histogram.count),
    ]
    lines = [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} histogram"]
    return lines + [f"{name}{suffix} {_number(value)}" for suffix, value in samples]


def _labels(**labels: str) -> str:
    inner = ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
