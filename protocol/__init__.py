"""The wire contract between pilots, users' clients and the coordinator.

PUBLIC CONTRACT: changes are additive only. Every message is a frozen stdlib dataclass
that serialises to a JSON object with ``to_dict`` and is read back with ``from_dict``.
``from_dict`` ignores keys it does not know, so an older pilot keeps working against a
newer coordinator that added fields. A snapshot of every message's fields is kept in
``tests/protocol/protocol_schema.json`` and a test fails when it changes without the snapshot.

This module imports only the standard library: the single-file pilot carries it and the
coordinator imports it.

One module over 800 lines on purpose (docs/architecture.md says why): the whole contract
is read and reviewed as one unit.
"""

from __future__ import annotations

import dataclasses
import enum
import urllib.parse
from collections.abc import Mapping
from typing import Any, ClassVar, Optional, TypeVar

__version__ = "0.1.0"
"""The release of gridpilot: the one version source (pyproject reads it, pilots send it).

It lives in the contract because both sides put it on the wire (registration, /health)."""

PROTOCOL_VERSION = 1
"""Bumped only when a pilot built for an older version can no longer be served."""

MIN_PROTOCOL_VERSION = 1
"""Pilots announcing an older protocol get HTTP 426."""

PROTOCOL_HEADER = "X-Gridpilot-Protocol"
LOG_STREAMS = ("stdout", "stderr")
API_PREFIX = "/api/v1"
PILOT_HEADER = "X-Gridpilot-Pilot"
"""A pilot names itself (its pilot id) in this header on every per-job call."""
SHA256_HEADER = "X-Content-Sha256"
"""The sha256 of a sandbox's bytes: sent with an upload, answered with a download."""
LOG_NEXT_OFFSET_HEADER = "X-Log-Next-Offset"
"""A log read: the offset to ask for next."""
LOG_COMPLETE_HEADER = "X-Log-Complete"
"""A log read: ``true`` once the job is over and the reader has every byte."""
LOG_SIZE_HEADER = "X-Log-Size"
"""A log read: the bytes stored so far."""


class JobStatus(str, enum.Enum):
    """DIRAC's major job states, spelt as DIRAC spells them."""

    SUBMITTING = "Submitting"
    RECEIVED = "Received"
    CHECKING = "Checking"
    WAITING = "Waiting"
    MATCHED = "Matched"
    RUNNING = "Running"
    COMPLETING = "Completing"
    DONE = "Done"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STALLED = "Stalled"
    RESCHEDULED = "Rescheduled"
    KILLED = "Killed"
    DELETED = "Deleted"


FINAL_STATUSES = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.KILLED})


class CheckStatus(str, enum.Enum):
    """Outcome of one node check (Nagios-like, plus skip and timeout)."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"
    UNKNOWN = "unknown"
    TIMEOUT = "timeout"


class CommandKind(str, enum.Enum):
    """What the coordinator may ask a pilot to do in a heartbeat reply.

    Pilots ignore kinds they do not know, so new kinds can be added.
    """

    KILL = "kill"


class Role(str, enum.Enum):
    USER = "user"
    PILOT = "pilot"
    ADMIN = "admin"


class ErrorCode(str, enum.Enum):
    """``ErrorBody.code``: what was refused, for programs (the message is for people).

    Additive like the messages: clients keep ``code`` as a string, so a code they do not
    know is still an error they can show."""

    BAD_REQUEST = "bad_request"
    INVALID_DESCRIPTION = "invalid_description"
    JDL_SYNTAX = "jdl_syntax"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    NO_OUTPUT = "no_output"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INVALID_TRANSITION = "invalid_transition"
    LEASE_LOST = "lease_lost"
    RESCHEDULE_LIMIT = "reschedule_limit"
    LOG_GAP = "log_gap"
    """A log chunk past the stored end; ``details.expected_offset`` says where to go on."""
    LOG_CONFLICT = "log_conflict"
    TOO_LARGE = "too_large"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    UNSAFE_SANDBOX = "unsafe_sandbox"
    PILOT_TOO_OLD = "pilot_too_old"
    RATE_LIMITED = "rate_limited"
    HTTP_ERROR = "http_error"
    """Any other HTTP error status."""
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"
    """503: the database or the sandbox store cannot be reached just now; retry later."""


class Feature(str, enum.Enum):
    """What a coordinator does beyond the first release of protocol 1, listed in its
    ``RegistrationReply.features``: a pilot uses a feature only when it is listed, so a
    new pilot still works with an older coordinator (and an old pilot, which never asks,
    with a newer one)."""

    RUNNING_IN_HEARTBEAT = "running_in_heartbeat"
    """A pilot's batched heartbeat may say a job's payload started (``JobHeartbeat.started``):
    Matched -> Running rides it, and the pilot starts the payload without a Running report
    of its own; a final report may do the same (``JobStatusUpdate.started``)."""


M = TypeVar("M", bound="Message")


def _encode(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


class Message:
    """Mixin for wire messages: ``to_dict`` / ``from_dict`` with nested messages.

    ``_nested`` maps a field name to the message class of its value, or of each item when
    the field holds a list. ``_enums`` maps a field name to its enum class.
    """

    _nested: ClassVar[Mapping[str, type[Message]]] = {}
    _enums: ClassVar[Mapping[str, type[enum.Enum]]] = {}

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = _encode(self)
        return result

    @classmethod
    def from_dict(cls: type[M], data: Mapping[str, Any]) -> M:
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                continue
            if key in cls._nested and value is not None:
                sub = cls._nested[key]
                if isinstance(value, list):
                    value = [sub.from_dict(item) for item in value]
                else:
                    value = sub.from_dict(value)
            elif key in cls._enums and value is not None:
                value = cls._enums[key](value)
            kwargs[key] = value
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ValueError(f"{cls.__name__}: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class ErrorBody(Message):
    """Body of every error response: ``{code, message, details}``."""

    code: str
    message: str
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class CheckReport(Message):
    """One node check's result as sent to the coordinator."""

    name: str
    status: CheckStatus
    message: str = ""
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    tags: list[str] = dataclasses.field(default_factory=list)
    fatal: bool = False
    duration_s: float = 0.0
    source: str = "builtin"

    _enums: ClassVar[Mapping[str, type[enum.Enum]]] = {"status": CheckStatus}


@dataclasses.dataclass(frozen=True)
class PilotRegistration(Message):
    """Sent once at start: who the pilot is and what its node can do."""

    hostname: str
    pilot_version: str
    protocol_version: int = PROTOCOL_VERSION
    site: str = "ANY"
    ce: str = ""
    batch_system: str = ""
    batch_job_id: str = ""
    cores: int = 1
    memory_mb: int = 0
    disk_free_mb: int = 0
    platform: str = ""
    python_version: str = ""
    time_left_s: Optional[int] = None
    tags: list[str] = dataclasses.field(default_factory=list)
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    checks: list[CheckReport] = dataclasses.field(default_factory=list)
    accepting_work: bool = True
    refuse_reason: str = ""

    _nested: ClassVar[Mapping[str, type[Message]]] = {"checks": CheckReport}


@dataclasses.dataclass(frozen=True)
class RegistrationReply(Message):
    pilot_id: str
    heartbeat_interval_s: float = 30.0
    server_version: str = ""
    features: list[str] = dataclasses.field(default_factory=list)
    """``Feature`` values this coordinator offers (kept as strings: a pilot ignores the
    ones it does not know)."""
    job_lease_s: float = 0.0
    """How long a job whose pilot is silent stays that pilot's before the coordinator may
    give it to another (heartbeat timeout + stalled grace); 0 when the coordinator does not
    say. A pilot that cannot renew its jobs' leases for this long stops their payloads."""


@dataclasses.dataclass(frozen=True)
class GpuInfo(Message):
    """One GPU of a node as its pilot offers it (the ``gpu`` check's inventory)."""

    id: str
    """How the payload's runtime names it: ``CUDA_VISIBLE_DEVICES`` / ``ROCR_VISIBLE_DEVICES``
    index, as text."""
    vendor: str = "nvidia"
    """``nvidia`` or ``amd``."""
    model: str = ""
    memory_mb: int = 0
    capability: str = ""
    """CUDA compute capability (``8.0``); an AMD GPU's gfx target (``gfx90a``)."""
    driver: str = ""
    cuda: str = ""
    """Highest CUDA version the driver supports (``12.2``); empty for AMD."""


SLOT_POLICIES = ("whole_node_first", "smallest_first")
"""``MatchRequest.slot_policy``: which of the fitting jobs a multi-core pilot wants first.
``whole_node_first`` (DIRAC's choice): whole-node jobs on an empty node, then jobs taking
exactly the free cores, then multi-core ones, then any; ``smallest_first``: the narrowest."""


@dataclasses.dataclass(frozen=True)
class MatchRequest(Message):
    """A pilot asking for up to ``n`` jobs that fit what it has free now."""

    n: int = 1
    cores_free: int = 1
    memory_free_mb: int = 0
    time_left_s: Optional[int] = None
    site: str = "ANY"
    platform: str = ""
    tags: list[str] = dataclasses.field(default_factory=list)
    container_runtimes: list[str] = dataclasses.field(default_factory=list)
    request_id: str = ""
    """Chosen by the pilot, the same for every retry of one request: a retried match whose
    first reply was lost gets the jobs the first one claimed, and claims no others."""
    gpus_free: Optional[list[GpuInfo]] = None
    """The node's free GPUs; None from a pilot that does not count GPUs (an older one),
    which is then matched on the ``GPU`` tag alone."""
    slot_policy: str = ""
    """One of ``SLOT_POLICIES``; empty: the coordinator's order (fair share, priority)."""
    min_cores: int = 0
    """Only jobs taking at least this many cores (a pilot that freed cores for a wide job)."""

    _nested: ClassVar[Mapping[str, type[Message]]] = {"gpus_free": GpuInfo}


@dataclasses.dataclass(frozen=True)
class JobAssignment(Message):
    """One job given to a pilot: everything the wrapper needs to run it."""

    job_id: int
    executable: str
    arguments: list[str] = dataclasses.field(default_factory=list)
    stdout: str = "std.out"
    stderr: str = "std.err"
    input_sandboxes: list[str] = dataclasses.field(default_factory=list)
    """sha256 digests of tar archives to unpack into the work dir, in order."""
    output_sandbox: list[str] = dataclasses.field(default_factory=list)
    """File names or globs to collect after the run."""
    cores: int = 1
    memory_mb: int = 0
    wall_time_s: Optional[int] = None
    cpu_time_s: Optional[int] = None
    container: str = ""
    description: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Every attribute of the job as submitted (after parametric expansion)."""
    lease_s: float = 0.0
    """How long the job stays this pilot's with no word from it: until it is reported
    Running (in a report or a heartbeat), then between heartbeats. 0: not said."""
    gpus: list[str] = dataclasses.field(default_factory=list)
    """Ids (``GpuInfo.id``) of the offered GPUs given to this job; the payload sees only
    these."""
    whole_node: bool = False
    """The job asked for the whole node (``WholeNode``): ``cores`` is all of it."""


@dataclasses.dataclass(frozen=True)
class MatchReply(Message):
    jobs: list[JobAssignment] = dataclasses.field(default_factory=list)
    retry_after_s: float = 0.0
    wider_job_cores: int = 0
    """A waiting job of this pilot's VO would fit its node, but not the cores free now:
    the fewest cores such a job takes (0: none). A pilot may stop taking narrower jobs
    until that many are free, so wide jobs do not starve behind narrow ones."""

    _nested: ClassVar[Mapping[str, type[Message]]] = {"jobs": JobAssignment}


@dataclasses.dataclass(frozen=True)
class JobStatusUpdate(Message):
    """A pilot reporting a job's progress or final state."""

    status: JobStatus
    minor_status: str = ""
    application_status: str = ""
    source: str = "JobWrapper"
    exit_code: Optional[int] = None
    output_sandbox: str = ""
    """sha256 of the uploaded output sandbox, if any."""
    timings_s: dict[str, float] = dataclasses.field(default_factory=dict)
    """Phase durations: match, stage_in, setup, payload, stage_out."""
    cpu_s: Optional[float] = None
    max_rss_bytes: Optional[int] = None
    infrastructure_error: bool = False
    """The node or runtime failed, not the payload: the coordinator reschedules the job."""
    started: bool = False
    """The payload started. A job still Matched goes through Running first (its start did
    not ride a heartbeat before it ended; ``Feature.RUNNING_IN_HEARTBEAT``)."""
    log_offsets: dict[str, int] = dataclasses.field(default_factory=dict)
    """Bytes of each stream (``stdout``, ``stderr``) the pilot shipped in all: the final
    report says where each log ends, in the same request as the status and the output."""
    request_id: str = ""
    """Chosen by the pilot, the same for every retry of one report: a retry of a report
    already applied changes nothing and is answered with the job as it is."""
    cores: Optional[int] = None
    """Cores the job held (``JobAssignment.cores``): CPU efficiency is CPU time over wall
    time times these."""
    gpus: Optional[int] = None
    """GPUs the job held."""

    _enums: ClassVar[Mapping[str, type[enum.Enum]]] = {"status": JobStatus}


@dataclasses.dataclass(frozen=True)
class Heartbeat(Message):
    cpu_s: Optional[float] = None
    rss_bytes: Optional[int] = None
    wall_s: Optional[float] = None
    log_offsets: dict[str, int] = dataclasses.field(default_factory=dict)
    """Bytes of each stream (``stdout``, ``stderr``) the pilot has shipped so far."""


@dataclasses.dataclass(frozen=True)
class Command(Message):
    kind: str
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class HeartbeatReply(Message):
    commands: list[Command] = dataclasses.field(default_factory=list)

    _nested: ClassVar[Mapping[str, type[Message]]] = {"commands": Command}


@dataclasses.dataclass(frozen=True)
class JobHeartbeat(Message):
    """One running job's heartbeat inside a ``PilotHeartbeat``."""

    job_id: int
    heartbeat: Heartbeat = dataclasses.field(default_factory=Heartbeat)
    started: bool = False
    """The job's payload started since the last heartbeat: Matched -> Running, with no
    report of its own (``Feature.RUNNING_IN_HEARTBEAT``)."""

    _nested: ClassVar[Mapping[str, type[Message]]] = {"heartbeat": Heartbeat}


@dataclasses.dataclass(frozen=True)
class PilotHeartbeat(Message):
    """All the heartbeats a pilot has due, in one request (``POST /pilots/{id}/heartbeat``)."""

    jobs: list[JobHeartbeat] = dataclasses.field(default_factory=list)

    _nested: ClassVar[Mapping[str, type[Message]]] = {"jobs": JobHeartbeat}


@dataclasses.dataclass(frozen=True)
class JobHeartbeatResult(Message):
    """One job's answer in a ``PilotHeartbeatReply``: ``ok`` with its commands, or the
    refusal (``error``) the per-job heartbeat endpoint would have answered with."""

    job_id: int
    ok: bool = True
    error: Optional[ErrorBody] = None
    commands: list[Command] = dataclasses.field(default_factory=list)

    _nested: ClassVar[Mapping[str, type[Message]]] = {"error": ErrorBody, "commands": Command}


@dataclasses.dataclass(frozen=True)
class PilotHeartbeatReply(Message):
    """One result per job of the ``PilotHeartbeat``, in the order sent."""

    results: list[JobHeartbeatResult] = dataclasses.field(default_factory=list)

    _nested: ClassVar[Mapping[str, type[Message]]] = {"results": JobHeartbeatResult}


@dataclasses.dataclass(frozen=True)
class SubmitRequest(Message):
    """A user submitting one description (which may expand to many jobs)."""

    description: str
    format: str = "jdl"
    """One of ``jdl``, ``json``, ``yaml``."""
    input_sandboxes: list[str] = dataclasses.field(default_factory=list)
    """sha256 digests of sandboxes already uploaded for this submission."""


@dataclasses.dataclass(frozen=True)
class SubmitReply(Message):
    job_ids: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class SandboxInfo(Message):
    sha256: str
    size_bytes: int


@dataclasses.dataclass(frozen=True)
class HistoryEntry(Message):
    status: JobStatus
    minor_status: str = ""
    application_status: str = ""
    source: str = ""
    at: str = ""
    """UTC time, ISO 8601."""

    _enums: ClassVar[Mapping[str, type[enum.Enum]]] = {"status": JobStatus}


@dataclasses.dataclass(frozen=True)
class JobInfo(Message):
    """What a user sees of one job."""

    job_id: int
    status: JobStatus
    minor_status: str = ""
    application_status: str = ""
    site: str = "ANY"
    job_name: str = ""
    job_group: str = ""
    owner: str = ""
    owner_group: str = ""
    vo: str = ""
    pilot_id: str = ""
    exit_code: Optional[int] = None
    output_sandbox: str = ""
    created_at: str = ""
    updated_at: str = ""
    description: dict[str, Any] = dataclasses.field(default_factory=dict)
    timings_s: dict[str, float] = dataclasses.field(default_factory=dict)
    """Phase durations from the pilot's final report (match, stage_in, setup, payload, ...)."""
    cpu_s: Optional[float] = None
    """CPU seconds of the payload's process tree, from the final report."""
    max_rss_bytes: Optional[int] = None
    """Peak resident memory of the payload's process tree, from the final report."""
    reschedule_count: int = 0
    """How many times the job was rescheduled (lost lease, infrastructure failure, by hand)."""
    cores: Optional[int] = None
    """Cores the job ran on (reported by its pilot), else those it asked for."""
    gpus: Optional[int] = None
    """GPUs the job ran with, from its pilot's final report."""
    cpu_efficiency: Optional[float] = None
    """CPU seconds / (payload wall seconds x cores), as a fraction (0.93); not capped at 1."""

    _enums: ClassVar[Mapping[str, type[enum.Enum]]] = {"status": JobStatus}


@dataclasses.dataclass(frozen=True)
class PilotStateUpdate(Message):
    """A registered pilot telling the coordinator it stopped taking work, and why.

    Sent when a re-run fatal check fails, the black-hole guard trips, a signal asks the
    pilot to stop, or the slot's time runs out; ``checks`` carries the latest check results.
    """

    accepting_work: bool
    reason: str = ""
    checks: list[CheckReport] = dataclasses.field(default_factory=list)
    cause: str = ""
    """Why, for programs: one of ``STOP_CAUSES`` (empty from older pilots)."""

    _nested: ClassVar[Mapping[str, type[Message]]] = {"checks": CheckReport}


STOP_CAUSES = ("fatal_check", "black_hole", "signal", "no_time_left")
"""``PilotStateUpdate.cause``: a fatal check failed, the black-hole guard tripped, the batch
system asked the pilot to stop (drain), too little time is left in the batch slot."""


@dataclasses.dataclass(frozen=True)
class LogAppendReply(Message):
    """Answer to a log chunk: where the stored stream now ends."""

    next_offset: int


@dataclasses.dataclass(frozen=True)
class JobList(Message):
    """``GET /jobs``: jobs newest first, and the jobs per status."""

    jobs: list[JobInfo]
    """Without their descriptions (``description`` is empty): ``GET /jobs/{id}`` has it."""
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    """Jobs per status matching the filters other than ``status`` (Deleted left out)."""
    next_cursor: Optional[str] = None
    """Pass it as ``cursor`` for the next page; null on the last page."""

    _nested: ClassVar[Mapping[str, type[Message]]] = {"jobs": JobInfo}


@dataclasses.dataclass(frozen=True)
class JobHistory(Message):
    """``GET /jobs/{id}/history``: the job's status changes, oldest first."""

    history: list[HistoryEntry]
    next_cursor: Optional[str] = None
    """Pass it as ``cursor`` for the next page; null on the last page."""

    _nested: ClassVar[Mapping[str, type[Message]]] = {"history": HistoryEntry}


@dataclasses.dataclass(frozen=True)
class PilotInfo(Message):
    """What the coordinator knows of one registered pilot (``GET /pilots/{id}``)."""

    pilot_id: str
    subject: str
    vo: str
    hostname: str
    site: str
    ce: str
    batch_system: str
    batch_job_id: str
    pilot_version: str
    protocol_version: int
    platform: str
    cores: int
    memory_mb: int
    time_left_s: Optional[int]
    tags: list[str]
    facts: dict[str, Any]
    checks: list[CheckReport]
    accepting_work: bool
    refuse_reason: str
    """Why the pilot takes no work (a fatal check failed, it was told to stop, ...)."""
    registered_at: str
    last_seen: str
    """Last time it registered, asked for work, reported or sent a heartbeat."""
    job_ids: list[int]
    """Jobs it was given, also those taken from it since (rescheduled); for a user, only
    the user's own."""

    _nested: ClassVar[Mapping[str, type[Message]]] = {"checks": CheckReport}


@dataclasses.dataclass(frozen=True)
class PilotList(Message):
    """``GET /pilots``: registered pilots, newest first."""

    pilots: list[PilotInfo]
    next_cursor: Optional[str] = None
    """Pass it as ``cursor`` for the next page; null on the last page."""

    _nested: ClassVar[Mapping[str, type[Message]]] = {"pilots": PilotInfo}


class TokenKind(str, enum.Enum):
    """What a token may be used for."""

    ACCESS = "access"
    """Every API call its role allows."""
    LOGIN = "login"
    """A long-lived credential an admin gives a user: good only to obtain short-lived access
    tokens (``POST /tokens/exchange``, ``gridpilot login``)."""


@dataclasses.dataclass(frozen=True)
class TokenRequest(Message):
    """An admin asking for a token (``POST /tokens``)."""

    subject: str
    vo: str
    role: Role = Role.USER
    group: str = ""
    ttl_s: Optional[int] = None
    """Lifetime in seconds; default and maximum: the coordinator's ``token_ttl_s``."""
    kind: TokenKind = TokenKind.ACCESS

    _enums: ClassVar[Mapping[str, type[enum.Enum]]] = {"role": Role, "kind": TokenKind}


@dataclasses.dataclass(frozen=True)
class TokenExchangeRequest(Message):
    """A login credential asking for an access token (``POST /tokens/exchange``)."""

    ttl_s: Optional[int] = None
    """Lifetime wanted; default and maximum: the coordinator's ``login_token_ttl_s``, and
    never past the credential's own expiry."""


@dataclasses.dataclass(frozen=True)
class IssuedTokenReply(Message):
    """A token just signed, with its claims."""

    token: str
    token_id: str
    subject: str
    vo: str
    role: Role
    group: str
    expires_at: str
    kind: TokenKind = TokenKind.ACCESS

    _enums: ClassVar[Mapping[str, type[enum.Enum]]] = {"role": Role, "kind": TokenKind}


@dataclasses.dataclass(frozen=True)
class WhoAmI(Message):
    """The claims of the token a request was sent with (``GET /tokens/whoami``)."""

    subject: str
    vo: str
    role: Role
    group: str = ""
    token_id: str = ""
    expires_at: str = ""
    kind: TokenKind = TokenKind.ACCESS

    _enums: ClassVar[Mapping[str, type[enum.Enum]]] = {"role": Role, "kind": TokenKind}


@dataclasses.dataclass(frozen=True)
class RevokeRequest(Message):
    """An admin revoking a token by its id (``POST /tokens/revoke``)."""

    token_id: str
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class RevocationInfo(Message):
    token_id: str
    revoked_at: str
    revoked_by: str
    reason: str


@dataclasses.dataclass(frozen=True)
class RevokedTokens(Message):
    revoked: list[RevocationInfo]
    next_cursor: Optional[str] = None
    """Pass it as ``cursor`` for the next page; null on the last page."""

    _nested: ClassVar[Mapping[str, type[Message]]] = {"revoked": RevocationInfo}


@dataclasses.dataclass(frozen=True)
class RequirementCheck(Message):
    """One requirement of a waiting job against the pilots seen lately."""

    name: str
    """One of ``REQUIREMENTS``."""
    wanted: str = ""
    """What the job asks, as text; empty when it asks nothing (every pilot meets it)."""
    pilots_meeting: int = 0
    """How many of the pilots seen in the interval meet it."""
    excludes_all: bool = False
    """Pilots were seen and none meets it: this requirement alone keeps the job waiting."""


REQUIREMENTS = (
    "vo",
    "site",
    "banned_sites",
    "platform",
    "tags",
    "cores",
    "memory",
    "gpus",
    "cpu_time",
    "cpu_score",
    "container",
)
"""``RequirementCheck.name`` and ``QueueMiss.failed``, in the order they are shown."""


@dataclasses.dataclass(frozen=True)
class FairShareStanding(Message):
    """Where a job's owner stands among the owners of its VO with jobs waiting."""

    owner: str
    group: str = ""
    position: int = 0
    """1: the owner served first (furthest below its share)."""
    owners: int = 0
    """Owners of the VO with waiting jobs."""
    usage: float = 0.0
    """Cores matched to the owner's jobs lately (decaying by half every half-life)."""
    weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class JobExplanation(Message):
    """``GET /jobs/{id}/explain``: why a job is not running (yet)."""

    job_id: int
    status: JobStatus
    summary: str
    """One line: the main reason."""
    interval_s: int = 0
    """Pilots count as seen when they asked for work within this many seconds."""
    pilots_seen: int = 0
    pilots_meeting_all: int = 0
    requirements: list[RequirementCheck] = dataclasses.field(default_factory=list)
    excluded_by: list[str] = dataclasses.field(default_factory=list)
    """Requirements that alone exclude every pilot seen."""
    task_queue_id: Optional[int] = None
    queue_position: Optional[int] = None
    """1: the next job its task queue gives out."""
    queue_waiting: int = 0
    """Jobs waiting in its task queue."""
    queue_count_limit: int = 0
    """Non-zero when the queue counts stopped at this many (the coordinator counts no
    further): ``queue_waiting`` is then at least that, a ``queue_position`` past it means
    further back."""
    fair_share: Optional[FairShareStanding] = None
    last_pilot_at: str = ""
    """When a pilot of the job's VO last asked for work (UTC); empty: never."""

    _nested: ClassVar[Mapping[str, type[Message]]] = {
        "requirements": RequirementCheck,
        "fair_share": FairShareStanding,
    }
    _enums: ClassVar[Mapping[str, type[enum.Enum]]] = {"status": JobStatus}


@dataclasses.dataclass(frozen=True)
class QueueMiss(Message):
    """A task queue a pilot's offer did not fit, and which requirements it failed."""

    task_queue_id: int
    owner: str = ""
    failed: list[str] = dataclasses.field(default_factory=list)
    """Names from ``REQUIREMENTS``."""
    details: list[str] = dataclasses.field(default_factory=list)
    """One line per failed requirement: what the queue needs, what the pilot offered."""


@dataclasses.dataclass(frozen=True)
class PilotExplanation(Message):
    """``GET /pilots/{id}/explain``: why a pilot's last match request got no job."""

    pilot_id: str
    cause: str
    """One of ``PILOT_CAUSES``."""
    summary: str
    accepting_work: bool = True
    last_match_at: str = ""
    last_match_jobs: int = 0
    """Jobs its last match request was given."""
    queues: int = 0
    """Task queues of its VO now."""
    nearest: list[QueueMiss] = dataclasses.field(default_factory=list)
    """The queues its last offer missed by the fewest requirements, nearest first."""

    _nested: ClassVar[Mapping[str, type[Message]]] = {"nearest": QueueMiss}


PILOT_CAUSES = (
    "matched",
    "never_asked",
    "fatal_check",
    "black_hole",
    "signal",
    "no_time_left",
    "not_accepting",
    "no_waiting_jobs",
    "no_queue_fits",
    "fits_now",
)
"""``PilotExplanation.cause``: its last request got jobs; it never asked; it stopped taking
work (a fatal check, the black-hole guard, a signal: draining, no time left, another
reason); no job of its VO waits; no task queue fits its offer; a queue fits its last offer
now (jobs arrived, or it was beaten to them)."""


def url_problem(url: str) -> str:
    """What is wrong with ``url`` as a coordinator's address, or ``""`` when nothing is:
    it must be ``http://`` or ``https://`` with a host (and a port that is a number)."""
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme.lower() not in ("http", "https"):
        return "it must start with http:// or https://"
    try:
        port = parsed.port
    except ValueError:
        return "its port is not a number from 0 to 65535"
    if not parsed.hostname or port == 0:
        return "it names no host" if not parsed.hostname else "port 0 is no port"
    return ""


def version_key(text: str) -> tuple[int, ...]:
    """``"8.6"`` -> ``(8, 6)``: how GPU compute capabilities and driver or CUDA versions
    compare (``MinGPUCapability`` is met by a GPU whose capability's key is not lower).
    Text that does not start with a number (an AMD gfx target) gives ``()``."""
    parts = []
    for part in str(text).strip().split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


MESSAGES: tuple[type[Message], ...] = (
    ErrorBody,
    CheckReport,
    PilotRegistration,
    RegistrationReply,
    MatchRequest,
    JobAssignment,
    MatchReply,
    JobStatusUpdate,
    Heartbeat,
    Command,
    HeartbeatReply,
    JobHeartbeat,
    PilotHeartbeat,
    JobHeartbeatResult,
    PilotHeartbeatReply,
    SubmitRequest,
    SubmitReply,
    SandboxInfo,
    HistoryEntry,
    JobInfo,
    LogAppendReply,
    PilotStateUpdate,
    JobList,
    JobHistory,
    PilotInfo,
    PilotList,
    TokenRequest,
    TokenExchangeRequest,
    IssuedTokenReply,
    WhoAmI,
    RevokeRequest,
    RevocationInfo,
    RevokedTokens,
    GpuInfo,
    RequirementCheck,
    FairShareStanding,
    JobExplanation,
    QueueMiss,
    PilotExplanation,
)


def message_schema() -> dict[str, dict[str, str]]:
    """Field names and declared types of every message: what the snapshot test pins."""
    return {
        cls.__name__: {f.name: str(f.type) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for cls in MESSAGES
    }


HEADERS: tuple[str, ...] = (
    PROTOCOL_HEADER,
    PILOT_HEADER,
    SHA256_HEADER,
    LOG_NEXT_OFFSET_HEADER,
    LOG_COMPLETE_HEADER,
    LOG_SIZE_HEADER,
)
"""Every header of our own on the wire."""


def vocabulary_schema() -> dict[str, dict[str, str]]:
    """The wire's words besides the messages: header names and enum values (pinned by the
    same snapshot test as the messages, in ``tests/protocol/vocabulary_schema.json``)."""
    enums: tuple[type[enum.Enum], ...] = (
        JobStatus,
        CheckStatus,
        CommandKind,
        Role,
        ErrorCode,
        Feature,
    )
    schema = {cls.__name__: {m.name: str(m.value) for m in cls} for cls in enums}
    schema["headers"] = {name: name for name in HEADERS}
    words = {
        "slot_policies": SLOT_POLICIES,
        "stop_causes": STOP_CAUSES,
        "requirements": REQUIREMENTS,
        "pilot_causes": PILOT_CAUSES,
    }
    schema.update({kind: {word: word for word in values} for kind, values in words.items()})
    return schema


__all__ = [
    "API_PREFIX",
    "FINAL_STATUSES",
    "HEADERS",
    "LOG_COMPLETE_HEADER",
    "LOG_NEXT_OFFSET_HEADER",
    "LOG_SIZE_HEADER",
    "LOG_STREAMS",
    "MESSAGES",
    "MIN_PROTOCOL_VERSION",
    "PILOT_CAUSES",
    "PILOT_HEADER",
    "PROTOCOL_HEADER",
    "PROTOCOL_VERSION",
    "REQUIREMENTS",
    "SHA256_HEADER",
    "SLOT_POLICIES",
    "STOP_CAUSES",
    "CheckReport",
    "CheckStatus",
    "Command",
    "CommandKind",
    "ErrorBody",
    "ErrorCode",
    "FairShareStanding",
    "Feature",
    "GpuInfo",
    "Heartbeat",
    "HeartbeatReply",
    "HistoryEntry",
    "IssuedTokenReply",
    "JobAssignment",
    "JobExplanation",
    "JobHeartbeat",
    "JobHeartbeatResult",
    "JobHistory",
    "JobInfo",
    "JobList",
    "JobStatus",
    "JobStatusUpdate",
    "LogAppendReply",
    "MatchReply",
    "MatchRequest",
    "Message",
    "PilotExplanation",
    "PilotHeartbeat",
    "PilotHeartbeatReply",
    "PilotInfo",
    "PilotList",
    "PilotRegistration",
    "PilotStateUpdate",
    "QueueMiss",
    "RegistrationReply",
    "RequirementCheck",
    "RevocationInfo",
    "RevokeRequest",
    "RevokedTokens",
    "Role",
    "SandboxInfo",
    "SubmitReply",
    "SubmitRequest",
    "TokenExchangeRequest",
    "TokenKind",
    "TokenRequest",
    "WhoAmI",
    "message_schema",
    "url_problem",
    "version_key",
    "vocabulary_schema",
]
