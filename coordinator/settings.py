"""The coordinator's configuration: one frozen ``Settings`` built once and passed down."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coordinator.errors import CoordinatorError
from pilot.protocol import MIN_PROTOCOL_VERSION

ENV_PREFIX = "GRIDPILOT_"
GIB = 1024**3
MIB = 1024**2


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
    min_protocol_version: int = MIN_PROTOCOL_VERSION
    max_jobs_per_submission: int = 100_000
    database_url: str = ""
    """SQLAlchemy URL; empty means the SQLite file ``data_dir/gridpilot.db``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if not self.database_url:
            url = f"sqlite:///{self.data_dir / 'gridpilot.db'}"
            object.__setattr__(self, "database_url", url)
        for name in ("max_sandbox_bytes", "max_request_bytes", "token_ttl_s", "port"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must not be negative", details={"setting": name})

    @property
    def sandbox_dir(self) -> Path:
        return self.data_dir / "sandboxes"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

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
