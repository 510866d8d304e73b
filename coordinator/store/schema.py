"""The coordinator's tables (SQLAlchemy Core). Times are UTC ISO 8601 strings."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()


def utc_timestamp(now: datetime | None = None) -> str:
    """``now`` (default: the current time) as a UTC ISO 8601 string that sorts as text."""
    moment = now if now is not None else datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


jobs = Table(
    "jobs",
    metadata,
    Column("job_id", Integer, primary_key=True, autoincrement=True),
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
    Column("priority", Integer, nullable=False, default=0),
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
)

job_history = Table(
    "job_history",
    metadata,
    Column("entry_id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, ForeignKey("jobs.job_id", ondelete="CASCADE"), nullable=False),
    Column("status", String(32), nullable=False),
    Column("minor_status", Text, nullable=False, default=""),
    Column("application_status", Text, nullable=False, default=""),
    Column("source", String(255), nullable=False, default=""),
    Column("at", String(40), nullable=False),
    Index("ix_job_history_job", "job_id", "entry_id"),
)

sandboxes = Table(
    "sandboxes",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size_bytes", Integer, nullable=False),
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
    Column("job_id", Integer, ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
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
)
