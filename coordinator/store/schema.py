"""The coordinator's tables (SQLAlchemy Core). Times are UTC ISO 8601 strings."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)

metadata = MetaData()

BigInt = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit everywhere: PostgreSQL's INTEGER is 32-bit (job ids, byte counts), SQLite's INTEGER
is 64-bit already and must stay INTEGER for a primary key to be its rowid."""


def utc_timestamp(now: datetime | None = None) -> str:
    """``now`` (default: the current time) as a UTC ISO 8601 string that sorts as text."""
    moment = now if now is not None else datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def gpu_and_node_columns() -> tuple[Column[Any], ...]:
    """Requirements a job and its task queue share besides the first ones (GPUs, whole
    node, CPU score); server defaults so that rows written before them ask for nothing."""
    return (
        Column("gpus", Integer, nullable=False, default=0, server_default="0"),
        Column("gpu_memory_mb", Integer, nullable=False, default=0, server_default="0"),
        Column("gpu_capability", String(32), nullable=False, default="", server_default=""),
        Column("gpu_models", Text, nullable=False, default="[]", server_default="[]"),
        Column("whole_node", Boolean, nullable=False, default=False, server_default=false()),
        Column("min_cpu_score", Float, nullable=False, default=0.0, server_default="0"),
    )


jobs = Table(
    "jobs",
    metadata,
    Column("job_id", BigInt, primary_key=True, autoincrement=True),
    Column("status", String(32), nullable=False),
    Column("minor_status", Text, nullable=False, default=""),
    Column("application_status", Text, nullable=False, default=""),
    Column("owner", String(255), nullable=False),
    Column("owner_group", String(255), nullable=False, default=""),
    Column("vo", String(255), nullable=False),
    Column("job_name", Text, nullable=False, default=""),
    Column("job_group", Text, nullable=False, default=""),
    Column("description", Text, nullable=False),
    # The site shown to users: what was asked for, then where the job was matched.
    Column("site", String(255), nullable=False, default="ANY"),
    # Requirements used by matching; lists are JSON arrays.
    Column("req_sites", Text, nullable=False, default="[]"),
    Column("banned_sites", Text, nullable=False, default="[]"),
    Column("platform", String(255), nullable=False, default=""),
    Column("tags", Text, nullable=False, default="[]"),
    Column("cores", Integer, nullable=False, default=1),
    Column("max_cores", Integer, nullable=False, default=1),
    Column("max_ram_mb", Integer, nullable=False, default=0),
    Column("cpu_time_s", Integer, nullable=True),
    Column("wall_time_s", Integer, nullable=True),
    Column("container", Text, nullable=False, default=""),
    *gpu_and_node_columns(),
    Column("priority", Integer, nullable=False, default=0),
    # The task queue of jobs with these same requirements (see task_queues); kept while the
    # job runs so that a job put back to Waiting is matched from its queue again.
    Column("task_queue_id", Integer, nullable=True),
    # Run time.
    Column("pilot_id", String(64), nullable=False, default=""),
    Column("kill_requested", Boolean, nullable=False, default=False),
    Column("reschedule_count", Integer, nullable=False, default=0),
    Column("exit_code", Integer, nullable=True),
    Column("output_sandbox", String(64), nullable=False, default=""),
    Column("accounting", Text, nullable=False, default="{}"),
    Column("heartbeat_at", String(40), nullable=True),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Index("ix_jobs_match", "status", "vo", "priority", "job_id"),
    Index("ix_jobs_owner", "owner", "job_id"),
    Index("ix_jobs_pilot", "pilot_id"),
    # A queue's next jobs in match order (highest priority, then oldest) are one index seek.
    Index("ix_jobs_task_queue", "task_queue_id", "status", text("priority DESC"), "job_id"),
    # Search (coordinator/store/search.py): a user's jobs by status, newest first; the two
    # times the Job Monitor sorts and filters on. Counts per status, site, owner or group
    # come from job_counts (below), and a filtered page walks one of these or the ids.
    Index("ix_jobs_vo_owner_status", "vo", "owner", "status", "job_id"),
    Index("ix_jobs_updated", "updated_at"),
    Index("ix_jobs_created", "created_at"),
    # The monitor's minor status filter and the accounting's failures drilled down to their
    # jobs: a minor status's newest jobs, or how many there are, without reading the rest.
    Index("ix_jobs_minor_status", "minor_status", "job_id"),
)

# Job names by trigram, for ``JobName like %x%`` (coordinator/store/name_index.py): each
# dialect's own kind of object, made and kept by migration 0006 and not declared here
# (SQLAlchemy has no FTS5 table): SQLite's FTS5 table ``job_names`` and PostgreSQL's GIN
# index ``job_names_trgm``. Every object whose name starts so is one of them.
NAME_INDEX = "job_names"

job_history = Table(
    "job_history",
    metadata,
    Column("entry_id", BigInt, primary_key=True, autoincrement=True),
    Column("job_id", BigInt, ForeignKey("jobs.job_id", ondelete="CASCADE"), nullable=False),
    Column("status", String(32), nullable=False),
    Column("minor_status", Text, nullable=False, default=""),
    Column("application_status", Text, nullable=False, default=""),
    Column("source", String(255), nullable=False, default=""),
    Column("at", String(40), nullable=False),
    Index("ix_job_history_job", "job_id", "entry_id"),
    # Accounting: jobs reaching a status per hour (coordinator/store/accounting.py).
    Index("ix_job_history_status_at", "status", "at"),
)

# What the live event stream serves (coordinator/logic/events.py): every status change and
# every log append, in commit order, kept for ``event_retention_s``. It is in the database,
# not in a process, so that every coordinator replica serves the same stream and a client
# resumes on any of them. AUTOINCREMENT: ids are never reused after old rows are pruned.
job_events = Table(
    "job_events",
    metadata,
    Column("event_id", BigInt, primary_key=True, autoincrement=True),
    Column("job_id", BigInt, nullable=False),
    Column("kind", String(8), nullable=False),  # "status" or "log"
    Column("status", String(32), nullable=False, default=""),
    Column("minor_status", Text, nullable=False, default=""),
    Column("application_status", Text, nullable=False, default=""),
    Column("stream", String(16), nullable=False, default=""),
    Column("offset", Integer, nullable=False, default=0),
    Column("size_bytes", Integer, nullable=False, default=0),
    Column("at", String(40), nullable=False),
    Index("ix_job_events_at", "at"),
    sqlite_autoincrement=True,
)

sandboxes = Table(
    "sandboxes",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size_bytes", BigInt, nullable=False),
    Column("subject", String(255), nullable=False),
    Column("vo", String(255), nullable=False),
    Column("created_at", String(40), nullable=False),
)

# Everyone who proved they hold a sandbox's bytes by uploading them may read it back.
sandbox_uploaders = Table(
    "sandbox_uploaders",
    metadata,
    Column("sha256", String(64), ForeignKey("sandboxes.sha256"), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("vo", String(255), primary_key=True),
)

job_sandboxes = Table(
    "job_sandboxes",
    metadata,
    Column("job_id", BigInt, ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(8), primary_key=True),
    Column("sha256", String(64), ForeignKey("sandboxes.sha256"), primary_key=True),
    Column("position", Integer, nullable=False, default=0),
    Index("ix_job_sandboxes_sha", "sha256"),
)

pilots = Table(
    "pilots",
    metadata,
    Column("pilot_id", String(64), primary_key=True),
    Column("subject", String(255), nullable=False),
    Column("vo", String(255), nullable=False),
    Column("hostname", String(255), nullable=False, default=""),
    Column("site", String(255), nullable=False, default="ANY"),
    Column("ce", String(255), nullable=False, default=""),
    Column("batch_system", String(64), nullable=False, default=""),
    Column("batch_job_id", String(255), nullable=False, default=""),
    Column("version", String(64), nullable=False, default=""),
    Column("protocol_version", Integer, nullable=False, default=1),
    Column("platform", String(255), nullable=False, default=""),
    Column("cores", Integer, nullable=False, default=1),
    Column("memory_mb", Integer, nullable=False, default=0),
    Column("time_left_s", Integer, nullable=True),
    Column("registered_at", String(40), nullable=False),
    Column("last_seen", String(40), nullable=False),
    Column("facts", Text, nullable=False, default="{}"),
    Column("checks", Text, nullable=False, default="[]"),
    Column("tags", Text, nullable=False, default="[]"),
    Column("accepting_work", Boolean, nullable=False, default=True),
    Column("refuse_reason", Text, nullable=False, default=""),
    # What explanations read of a pilot (coordinator/logic/explain.py): why it stopped,
    # its GPUs and CPU score as registered, and its last match request with what it got.
    Column("stop_cause", String(32), nullable=False, default="", server_default=""),
    Column("gpus", Text, nullable=False, default="[]", server_default="[]"),
    Column("cpu_score", Float, nullable=False, default=0.0, server_default="0"),
    Column("last_match", Text, nullable=False, default="{}", server_default="{}"),
    Index("ix_pilots_vo_last_seen", "vo", "last_seen"),
)

# Token ids (the ``jti`` claim) refused from now on, with who revoked them and when.
revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("token_id", String(64), primary_key=True),
    Column("revoked_at", String(40), nullable=False),
    Column("revoked_by", String(255), nullable=False),
    Column("reason", Text, nullable=False, default=""),
)

# DIRAC-style task queues: one row per distinct set of requirements and owner. A match
# scans these rows, not the jobs. ``queue_key`` is a digest of every other column here.
task_queues = Table(
    "task_queues",
    metadata,
    Column("task_queue_id", Integer, primary_key=True, autoincrement=True),
    Column("queue_key", String(64), nullable=False, unique=True),
    Column("vo", String(255), nullable=False),
    Column("owner", String(255), nullable=False),
    Column("owner_group", String(255), nullable=False, default=""),
    Column("req_sites", Text, nullable=False, default="[]"),
    Column("banned_sites", Text, nullable=False, default="[]"),
    Column("platform", String(255), nullable=False, default=""),
    Column("tags", Text, nullable=False, default="[]"),
    Column("cores", Integer, nullable=False, default=1),
    Column("max_cores", Integer, nullable=False, default=1),
    Column("max_ram_mb", Integer, nullable=False, default=0),
    Column("cpu_time_s", Integer, nullable=True),
    Column("wall_time_s", Integer, nullable=True),
    Column("container", Text, nullable=False, default=""),
    *gpu_and_node_columns(),
    Column("created_at", String(40), nullable=False),
    Index("ix_task_queues_vo", "vo"),
)

# Fair share: each owner's recent usage (cores matched, decaying with a half-life).
owner_usage = Table(
    "owner_usage",
    metadata,
    Column("vo", String(255), primary_key=True),
    Column("owner", String(255), primary_key=True),
    Column("usage", Float, nullable=False, default=0.0),
    Column("updated_at_s", Float, nullable=False),
)

# Stored length of each log (a job's stdout/stderr, a pilot's own log). The bytes are files
# in the data dir (``logs/``); this row is the truth about how many of them count, so a crash
# between writing the file and committing never shows or keeps half an append.
logs = Table(
    "logs",
    metadata,
    Column("kind", String(8), primary_key=True),  # "job" or "pilot"
    Column("owner_id", String(64), primary_key=True),  # job id (as text) or pilot id
    Column("stream", String(16), primary_key=True),
    Column("size_bytes", BigInt, nullable=False, default=0),
    Column("updated_at", String(40), nullable=False),
)

# Jobs a pilot held and lost (rescheduled away from it): the registry still lists them.
pilot_jobs = Table(
    "pilot_jobs",
    metadata,
    Column("pilot_id", String(64), primary_key=True),
    Column("job_id", BigInt, ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("released_at", String(40), nullable=False),
    Index("ix_pilot_jobs_job", "job_id"),
)

# Jobs per (VO, owner, group, site, status, job group), kept by triggers on ``jobs``: the
# Job Monitor's counts and search totals read a few rows here instead of a million jobs
# (coordinator/store/search.py). The triggers and the first counts are made by migrations
# 0003 (SQLite) and 0006 (PostgreSQL) (coordinator/store/migrations/versions/), like every
# part of the schema.
ROLLUP_KEY = ("vo", "owner", "owner_group", "site", "status", "job_group")
job_counts = Table(
    "job_counts",
    metadata,
    *(Column(name, Text, primary_key=True) for name in ROLLUP_KEY),
    Column("n", Integer, nullable=False, default=0),
)

# PostgreSQL's triggers do not update ``job_counts`` (one row per key is a row lock every
# writer of that key would queue on, and two writers taking keys in opposite orders
# deadlock): they append +n/-n here, with no key to wait on; a count is ``job_counts``
# plus these, and the sweeper folds them into ``job_counts`` (coordinator/store/rollup.py,
# docs/scale-out.md). SQLite's triggers update ``job_counts`` itself (one writer at a
# time): the table stays empty there.
job_count_deltas = Table(
    "job_count_deltas",
    metadata,
    *(Column(name, Text, nullable=False) for name in ROLLUP_KEY),
    Column("n", Integer, nullable=False),
)


# Requests a pilot already had applied, by the id it chose (``MatchRequest.request_id``,
# ``JobStatusUpdate.request_id``): a retry whose first reply was lost is answered from here
# instead of being applied twice. ``job_ids`` is JSON: [[job_id, cores], ...] for a match.
pilot_requests = Table(
    "pilot_requests",
    metadata,
    Column("pilot_id", String(64), primary_key=True),
    Column("request_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("job_ids", Text, nullable=False, default="[]"),
    Column("created_at", String(40), nullable=False),
    Index("ix_pilot_requests_created", "created_at"),
)
