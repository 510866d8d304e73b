"""One frozen ``PilotConfig`` per pilot process.

Precedence, highest first: command-line options, ``GRIDPILOT_*`` environment variables, the
YAML file given with ``--config``, defaults. The config is built once in ``pilot.cli`` and
passed down; nothing reads the environment after that.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import yaml

from checks.config import ChecksConfig, parse_checks_config
from checks.errors import ChecksError
from pilot.errors import ConfigError
from protocol import SLOT_POLICIES, url_problem
from wrapper.config import ContainerSettings, WatchdogPolicy, WrapperConfig
from wrapper.errors import WrapperError
from wrapper.identity import parse_uid_range

ENV_PREFIX = "GRIDPILOT_"
NO_SLOT_POLICY = "any"
"""``slot_policy`` leaving the order to the coordinator (fair share, then priority)."""


@dataclasses.dataclass(frozen=True)
class PilotConfig:
    url: str
    token: str = dataclasses.field(repr=False)
    workdir: Path
    site: str = "ANY"
    ce: str = ""
    idle_timeout_s: float = 60.0
    poll_interval_s: float = 10.0
    """Longest wait between two match requests that found nothing."""
    cores: Optional[int] = None
    """Cores this pilot may fill; default: what the cores check found."""
    memory_mb: Optional[int] = None
    time_left_s: Optional[int] = None
    """Wall time left in the batch slot; default: read from the batch system."""
    min_time_left_s: float = 300.0
    """Stop asking for jobs when less time than this is left in the slot."""
    drain_grace_s: float = 20.0
    """After the first SIGTERM/SIGINT, running jobs get this long before they are killed."""
    recheck_interval_s: Optional[float] = None
    """Re-run every check this often between jobs; default: each check's own interval."""
    report_retry_s: float = 60.0
    """Retry a final job report this long, then keep it in the spool and retry it later."""
    spool_retry_interval_s: float = 10.0
    """How often kept (spooled) final reports are sent again."""
    upload_log: bool = True
    """Upload ``pilot.log`` to the coordinator at exit."""
    verify_tls: bool = True
    ca_bundle: Optional[str] = None
    request_timeout_s: float = 30.0
    max_retry_s: float = 300.0
    """Give up on the coordinator after retrying this long."""
    black_hole_failures: int = 5
    """Stop after this many jobs in a row failed fast (0: never)."""
    black_hole_window_s: float = 60.0
    """A failure counts as fast when the job ran less than this."""
    black_hole_owners: int = 2
    """Fast payload failures count against the node only once the jobs of this many owners
    failed (infrastructure failures always count): one user's broken jobs are no sign."""
    exit_grace_s: float = 30.0
    """Once payloads are killed (second signal, drain grace over) and at any exit, the last
    words (output uploads, final reports, logs) get this long; the rest stays in the spool."""
    payload_uids: str = ""
    """``FIRST-LAST``: as root, run each job under a uid of its own from this range."""
    remove_token_file: bool = False
    """Delete the token file once read (a copy the batch system gave this pilot), so that
    payloads running as the pilot's user cannot read it."""
    slot_policy: str = "whole_node_first"
    """Which fitting jobs a multi-core pilot asks for first (``protocol.SLOT_POLICIES``):
    ``whole_node_first`` (DIRAC's) or ``smallest_first``; ``any``: the coordinator's order."""
    wide_job_patience_s: float = 300.0
    """A job wider than the free cores, that would fit the node, has been waiting this long:
    take no narrower jobs until it fits (0: never hold cores for wide jobs)."""
    pin_cores: bool = True
    """Pin each payload to CPUs of its own (CPU affinity)."""
    check_options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    disabled_checks: tuple[str, ...] = ()
    checks: ChecksConfig = dataclasses.field(default_factory=ChecksConfig)
    """The YAML ``checks:`` section (sources, settings, options); see docs/checks.md."""
    wrapper: WrapperConfig = dataclasses.field(default_factory=WrapperConfig)
    """How jobs run: containers, watchdog, output cap. Set through the flat names of
    ``WRAPPER_SETTINGS`` (``GRIDPILOT_MAX_PROCESSES``, YAML ``container_runtimes``...)."""

    @property
    def tls_verify(self) -> Any:
        """What ``requests`` takes as ``verify``."""
        if not self.verify_tls:
            return False
        return self.ca_bundle or True


WRAPPER_SETTINGS: dict[str, tuple[str, ...]] = {
    "allow_plain": ("allow_plain",),
    "kill_grace_s": ("kill_grace_s",),
    "max_output_sandbox_bytes": ("max_output_sandbox_bytes",),
    "container_runtimes": ("containers", "runtimes"),
    "container_required": ("containers", "required"),
    "default_image": ("containers", "default_image"),
    "container_binds": ("containers", "binds"),
    "container_network": ("containers", "network"),
    "apptainer_path": ("containers", "apptainer_path"),
    "bwrap_path": ("containers", "bwrap_path"),
    "allowed_images": ("containers", "allowed_images"),
    "allow_remote_images": ("containers", "allow_remote_images"),
    **{f.name: ("watchdog", f.name) for f in dataclasses.fields(WatchdogPolicy)},
}
"""The wrapper's settings by their flat, documented names (YAML key, ``GRIDPILOT_<NAME>``)
and where each lives in ``WrapperConfig``: one config object, one name space to set it."""
_SECTIONS: dict[str, type[Any]] = {"containers": ContainerSettings, "watchdog": WatchdogPolicy}
_NESTED = ("check_options", "checks", "wrapper")
"""``PilotConfig`` fields that are built from sections, not set by one flat name."""
_FIELDS = {f.name: f for f in dataclasses.fields(PilotConfig) if f.name not in _NESTED}
SETTINGS = (*_FIELDS, *WRAPPER_SETTINGS)
"""Every flat setting name, in the order the pilot's and then the wrapper's fields are."""


def _field_type(name: str) -> str:
    """The declared type of a flat setting, as text (annotations are postponed)."""
    if name in _FIELDS:
        return str(_FIELDS[name].type)
    path = WRAPPER_SETTINGS[name]
    owner = _SECTIONS[path[0]] if len(path) == 2 else WrapperConfig
    return next(str(f.type) for f in dataclasses.fields(owner) if f.name == path[-1])


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, value: Any) -> Any:
    """Convert a value from the environment or YAML to the field's type, loudly."""
    kind = _field_type(name)
    if value is None:
        return None
    try:
        if kind == "Path":
            return Path(value).expanduser()
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _BOOL_TRUE:
                return True
            if text in _BOOL_FALSE:
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if kind in ("float", "Optional[float]"):
            return float(value)
        if kind in ("int", "Optional[int]"):
            return int(value)
        if kind == "tuple[str, ...]":
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}") from exc
    return value


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in SETTINGS:
        key = ENV_PREFIX + name.upper()
        if key in env:
            values[name] = env[key]
    if "GRIDPILOT_TOKEN_FILE" in env and "token" not in values:
        values["token_file"] = env["GRIDPILOT_TOKEN_FILE"]
    return values


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read pilot config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"pilot config {path}: top level must be a mapping")
    pilot_section = data.get("pilot", data)
    values = {k.replace("-", "_"): v for k, v in pilot_section.items() if k != "checks"}
    checks = data.get("checks") or {}
    if not isinstance(checks, dict):
        raise ConfigError(f"pilot config {path}: 'checks' must be a mapping")
    try:
        checks_config = parse_checks_config(checks, base_dir=path.parent)
    except ChecksError as exc:
        raise ConfigError(f"pilot config {path}: {exc}") from exc
    values["checks"] = checks_config
    values["check_options"] = {k: dict(v) for k, v in checks_config.options.items()}
    disabled = [n for n, s in checks_config.settings.items() if not s.enabled]
    if checks_config.disabled or disabled:
        values["disabled_checks"] = sorted(checks_config.disabled | set(disabled))
    return values


def _read_token(path: Any) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc}") from exc


def token_file_path(cli: Mapping[str, Any], env: Mapping[str, str]) -> Optional[Path]:
    """The token file the configuration was read from (the CLI's, else the environment's),
    for the pilot to check who else can read it."""
    path = cli.get("token_file") or env.get("GRIDPILOT_TOKEN_FILE")
    return Path(path).expanduser() if path else None


def load_config(
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    config_file: Optional[Path] = None,
) -> PilotConfig:
    """Merge the sources (CLI > env > file > defaults) into one validated config."""
    merged: dict[str, Any] = {}
    layers = [
        _from_file(config_file) if config_file is not None else {},
        _from_env(env),
        {k: v for k, v in cli.items() if v is not None},
    ]
    for layer in layers:
        # A token file in a higher layer beats a token in a lower one (and vice versa).
        token_file = layer.pop("token_file", None)
        if token_file and not layer.get("token"):
            layer["token"] = _read_token(token_file)
        merged.update(layer)
    unknown = sorted(set(merged) - set(SETTINGS) - {"checks", "check_options"})
    if unknown:
        raise ConfigError(f"unknown pilot setting(s): {', '.join(unknown)}")
    for required in ("url", "token", "workdir"):
        if not merged.get(required):
            raise ConfigError(
                f"missing {required}: give --{required.replace('_', '-')} or "
                f"{ENV_PREFIX}{required.upper()}"
                + (" (or --token-file / GRIDPILOT_TOKEN_FILE)" if required == "token" else "")
            )
    values = {k: v if k in _NESTED else _coerce(k, v) for k, v in merged.items()}
    values["url"] = str(values["url"]).strip().rstrip("/")
    problem = url_problem(values["url"])
    if problem:
        raise ConfigError(f"url {values['url']!r} is not a coordinator URL: {problem}")
    wrapper_values = {name: values.pop(name) for name in WRAPPER_SETTINGS if name in values}
    values["wrapper"] = _wrapper_config(wrapper_values, values["workdir"])
    config = PilotConfig(**values)
    if config.idle_timeout_s < 0 or config.poll_interval_s <= 0:
        raise ConfigError("idle_timeout_s must be >= 0 and poll_interval_s > 0")
    for name in (
        "min_time_left_s",
        "drain_grace_s",
        "report_retry_s",
        "max_retry_s",
        "exit_grace_s",
    ):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must be >= 0")
    if config.recheck_interval_s is not None and config.recheck_interval_s <= 0:
        raise ConfigError("recheck_interval_s must be > 0")
    try:
        parse_uid_range(config.payload_uids)
    except WrapperError as exc:
        raise ConfigError(str(exc)) from exc
    if config.slot_policy not in (*SLOT_POLICIES, NO_SLOT_POLICY):
        choices = ", ".join((*SLOT_POLICIES, NO_SLOT_POLICY))
        raise ConfigError(f"slot_policy {config.slot_policy!r} is not one of {choices}")
    if config.wide_job_patience_s < 0:
        raise ConfigError("wide_job_patience_s must be >= 0")
    return config


def _wrapper_config(values: Mapping[str, Any], workdir: Path) -> WrapperConfig:
    """The wrapper's config from flat settings; Apptainer's cache goes under the pilot dir."""
    nested: dict[str, dict[str, Any]] = {"": {}, **{section: {} for section in _SECTIONS}}
    for name, value in values.items():
        path = WRAPPER_SETTINGS[name]
        nested[path[0] if len(path) == 2 else ""][path[-1]] = value
    containers = ContainerSettings(**{"state_dir": workdir, **nested["containers"]})
    watchdog = WatchdogPolicy(**nested["watchdog"])
    return WrapperConfig(**nested[""], containers=containers, watchdog=watchdog)


def environ() -> Mapping[str, str]:
    """The process environment, read once by the CLI."""
    return dict(os.environ)
