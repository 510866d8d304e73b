"""The coordinator's configuration: one frozen ``Settings`` built once and passed down."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coordinator.errors import CoordinatorError
from coordinator.logic import fairshare
from protocol import MIN_PROTOCOL_VERSION

ENV_PREFIX = "GRIDPILOT_"
GIB = 1024**3
MIB = 1024**2
METRICS_ACCESS = ("open", "admin")


class SettingsError(CoordinatorError):
    """A configuration value that cannot be used."""

    code = "bad_settings"


@dataclasses.dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    max_sandbox_bytes: int = 10 * GIB
    max_request_bytes: int = 64 * MIB
    """Limit for JSON request bodies (a large parametric JDL still fits)."""
    heartbeat_interval_s: float = 30.0
    match_retry_after_s: float = 10.0
    token_ttl_s: int = 7 * 24 * 3600
    login_token_ttl_s: int = 12 * 3600
    """Lifetime of the access tokens ``gridpilot login`` obtains with a login credential
    (never past the credential's own expiry)."""
    min_protocol_version: int = MIN_PROTOCOL_VERSION
    max_jobs_per_submission: int = 100_000
    max_submission_bytes: int = 64 * MIB
    """The most the jobs of one submission may take together once parametric descriptions
    are expanded (names and values, about their stored size); more gets 413."""
    sites: frozenset[str] = frozenset()
    default_site: str = ""
    """The site recorded for pilots that name none (no ``--site``, nothing in the batch
    environment); empty: the pilot's host name. ANY would read as "not yet assigned"."""
    """Known site names; when given, jobs naming another Site or BannedSites are refused.
    From ``GRIDPILOT_SITES`` or ``serve --sites`` as a comma-separated list."""
    # Leases (coordinator/logic/leases.py, run by coordinator/sweeper.py).
    match_timeout_s: float = 180.0
    """A Matched job with no Running report nor heartbeat for this long is rescheduled.
    Pilots heartbeat a job from its match on, and retry a lost match reply with its request
    id: a Matched job silent for six heartbeat intervals has no pilot any more."""
    heartbeat_timeout_s: float = 0.0
    """A Running/Completing job silent for this long becomes Stalled; 0 means
    3 x ``heartbeat_interval_s``."""
    stalled_grace_s: float = 300.0
    """How long a Stalled job may wait for its pilot to come back before it is rescheduled.
    A pilot that cannot renew a lease for heartbeat timeout + this grace stops the payload
    itself before that (docs/reliability.md "Lease timings")."""
    max_reschedules: int = 3
    sweep_interval_s: float = 10.0
    """How often the sweeper looks for expired leases."""
    # Logs (coordinator/logic/logs.py).
    max_log_chunk_bytes: int = MIB
    max_log_bytes: int = 100 * MIB
    """Total bytes kept per job (all streams together) and per pilot log."""
    database_url: str = ""
    """SQLAlchemy URL; empty means the SQLite file ``data_dir/gridpilot.db``. PostgreSQL:
    ``postgresql+psycopg://USER:PASSWORD@HOST/NAME`` (what several replicas share)."""
    sandbox_store: str = ""
    """Where sandboxes and logs live: empty means ``data_dir`` (``sandboxes/``, ``logs/``),
    a path means that directory, ``s3://BUCKET/PREFIX`` an S3 bucket (endpoint and
    credentials from the usual ``AWS_*`` environment variables)."""
    signing_key_file: str = ""
    """The Ed25519 key that signs tokens; empty means ``data_dir/signing-key.pem``, created
    on first use. Replicas share one: name a file holding the same key on each, which is
    then never created (a replica with a key of its own would refuse the others' tokens)."""
    rate_limit_per_s: float = 200.0
    """Requests per second per token (per pilot for pilot tokens); 0 turns the limit off."""
    rate_limit_burst: int = 1000
    """Requests a token may send at once before the per-second rate applies."""
    revocation_refresh_s: float = 5.0
    """How often revoked token ids are reloaded (matters with several coordinator processes)."""
    tls_cert_file: str = ""
    """PEM certificate chain to serve HTTPS with; empty serves plain HTTP."""
    tls_key_file: str = ""
    # Matching (coordinator/logic/matchmaker.py, fairshare.py).
    fair_share_file: str = ""
    """YAML/JSON file of owners' weights per VO, ``{vo: {owner: weight}}`` (``--fair-share``)."""
    fair_share_weights: Mapping[str, Mapping[str, float]] = dataclasses.field(
        default_factory=dict, hash=False
    )
    """The weights themselves; read from ``fair_share_file`` when one is given. As an
    environment variable: the same mapping as JSON text."""
    fair_share_half_life_s: float = 3600.0
    """Owners' past usage counts half as much after this long."""
    # Explanations (coordinator/logic/explanations.py).
    explain_interval_s: float = 600.0
    """``gridpilot explain`` counts the pilots that asked for work within this long."""
    explain_max_pilots: int = 10_000
    """The most recent pilots an explanation looks at (the newest first)."""
    # The live event stream (coordinator/logic/events.py).
    event_poll_s: float = 0.25
    """How often an open event stream looks for new events in the database."""
    event_retention_s: float = 3600.0
    """How long events are kept: a client away for longer reloads instead of resuming."""
    event_stream_max_s: float = 300.0
    """A stream ends after this long and the client reconnects with its Last-Event-ID."""
    metrics_access: str = "open"
    """Who may read ``/metrics``: ``open`` (no token, as Prometheus scrapes) or ``admin``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if isinstance(self.sites, str):
            names = (name.strip() for name in self.sites.split(","))
            object.__setattr__(self, "sites", frozenset(name for name in names if name))
        if not self.database_url:
            url = f"sqlite:///{self.data_dir / 'gridpilot.db'}"
            object.__setattr__(self, "database_url", url)
        for name in (
            "max_sandbox_bytes",
            "max_request_bytes",
            "max_submission_bytes",
            "token_ttl_s",
            "port",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must not be negative", details={"setting": name})
        for name in (
            "rate_limit_per_s",
            "rate_limit_burst",
            "revocation_refresh_s",
            "explain_interval_s",
            "explain_max_pilots",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must not be negative", details={"setting": name})
        if self.login_token_ttl_s < 1:
            raise SettingsError(
                "login_token_ttl_s must be at least 1", details={"setting": "login_token_ttl_s"}
            )
        _check_lease_settings(self)
        _check_matching_settings(self)
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SettingsError("TLS needs both a certificate and a key file")

    @classmethod
    def from_env(
        cls, data_dir: Path, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Defaults < ``GRIDPILOT_<FIELD>`` environment variables < ``overrides`` (not None)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name == "data_dir":
                continue
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is not None:
                values[field.name] = _convert(field.name, field.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(data_dir=Path(data_dir), **values)


def _check_matching_settings(settings: Settings) -> None:
    """Load the fair-share weights (file, or JSON text from the environment) and check them."""
    weights: Any = settings.fair_share_weights
    if settings.fair_share_file:
        weights = fairshare.load_weights(Path(settings.fair_share_file))
    elif isinstance(weights, str):
        weights = fairshare.parse_weights(weights, ENV_PREFIX + "FAIR_SHARE_WEIGHTS")
    else:
        weights = fairshare.check_weights(weights, "fair_share_weights")
    object.__setattr__(settings, "fair_share_weights", weights)
    if settings.fair_share_half_life_s <= 0:
        raise SettingsError(
            "fair_share_half_life_s must be positive", details={"setting": "fair_share_half_life_s"}
        )
    if settings.metrics_access not in METRICS_ACCESS:
        raise SettingsError(
            f"metrics_access must be one of {', '.join(METRICS_ACCESS)}",
            details={"setting": "metrics_access", "value": settings.metrics_access},
        )


def _check_lease_settings(settings: Settings) -> None:
    """Fill in the derived heartbeat timeout and refuse lease/log values that cannot work."""
    if settings.heartbeat_timeout_s == 0:
        object.__setattr__(settings, "heartbeat_timeout_s", 3 * settings.heartbeat_interval_s)
    positive = (
        "match_timeout_s",
        "heartbeat_timeout_s",
        "sweep_interval_s",
        "max_log_chunk_bytes",
        "max_log_bytes",
        "event_poll_s",
        "event_retention_s",
        "event_stream_max_s",
    )
    for name in positive:
        if getattr(settings, name) <= 0:
            raise SettingsError(f"{name} must be positive", details={"setting": name})
    for name in ("stalled_grace_s", "max_reschedules"):
        if getattr(settings, name) < 0:
            raise SettingsError(f"{name} must not be negative", details={"setting": name})


def _convert(name: str, type_name: Any, raw: str) -> Any:
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError as exc:
        raise SettingsError(
            f"{ENV_PREFIX}{name.upper()}={raw!r} is not a number", details={"setting": name}
        ) from exc
    return raw
