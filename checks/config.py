"""The ``checks:`` section of the pilot's YAML config, parsed into one frozen ``ChecksConfig``.

The same section drives the pilot and ``gridpilot checks run --config F``::

    checks:
      disabled: [gpu]                    # names not to run
      entry_points: true                 # load installed gridpilot.checks plugins
      search_path: [/opt/site/checks]    # importable by refs (relative to the file)
      refs:                              # name: module:function (or a list of refs)
        scratch: site_checks:scratch
      script_dirs: [/etc/gridpilot/probes]
      settings:                          # per check: enabled, fatal, timeout_s, interval_s
        disk: {fatal: false, timeout_s: 20, interval_s: 600}
      options:                           # per check: what its function reads
        disk: {min_free_mb: 20480}

Every mistake is a ``ChecksConfigError`` naming the bad key (``checks.settings.disk.fatal``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import yaml

from checks.api import MAX_TIMEOUT_S, validate_name
from checks.errors import CheckDefinitionError, ChecksError

_SECTION_KEYS = frozenset(
    {"disabled", "entry_points", "search_path", "refs", "script_dirs", "settings", "options"}
)
_SETTING_KEYS = frozenset({"enabled", "fatal", "timeout_s", "interval_s"})


class ChecksConfigError(ChecksError):
    """The ``checks:`` section is malformed; the message names the bad key."""


@dataclasses.dataclass(frozen=True)
class CheckSettings:
    """Per-check overrides; None keeps what the check declares (or the default)."""

    enabled: bool = True
    fatal: Optional[bool] = None
    timeout_s: Optional[float] = None
    interval_s: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class ChecksConfig:
    """Which checks a pilot runs, where community checks come from, and their options."""

    disabled: frozenset[str] = frozenset()
    entry_points: bool = True
    search_path: tuple[Path, ...] = ()
    refs: tuple[tuple[str, str], ...] = ()
    """(name, ``module:function``) pairs, in the order written."""
    script_dirs: tuple[Path, ...] = ()
    settings: Mapping[str, CheckSettings] = dataclasses.field(default_factory=dict)
    options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def settings_for(self, name: str) -> CheckSettings:
        return self.settings.get(name, CheckSettings())

    def is_enabled(self, name: str) -> bool:
        return name not in self.disabled and self.settings_for(name).enabled


def load_checks_config(path: Path) -> ChecksConfig:
    """Read ``path`` (a pilot YAML config) and parse its ``checks:`` section."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ChecksConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ChecksConfigError(f"config {path}: the top level must be a mapping")
    return parse_checks_config(data.get("checks"), base_dir=path.parent)


def parse_checks_config(section: object, *, base_dir: Path = Path(".")) -> ChecksConfig:
    """Parse a ``checks:`` mapping (None means all defaults); relative paths use ``base_dir``."""
    if section is None:
        return ChecksConfig()
    data = _mapping(section, "checks")
    unknown = sorted(set(data) - _SECTION_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_SECTION_KEYS))
        raise ChecksConfigError(f"checks.{unknown[0]}: unknown key (allowed: {allowed})")
    return ChecksConfig(
        disabled=frozenset(_names(data.get("disabled", []), "checks.disabled")),
        entry_points=_bool(data.get("entry_points", True), "checks.entry_points"),
        search_path=_paths(data.get("search_path", []), "checks.search_path", base_dir),
        refs=_refs(data.get("refs", {})),
        script_dirs=_paths(data.get("script_dirs", []), "checks.script_dirs", base_dir),
        settings={
            name: _settings(value, f"checks.settings.{name}")
            for name, value in _named_mapping(data.get("settings", {}), "checks.settings").items()
        },
        options={
            name: dict(_mapping({} if value is None else value, f"checks.options.{name}"))
            for name, value in _named_mapping(data.get("options", {}), "checks.options").items()
        },
    )


def _mapping(value: object, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ChecksConfigError(f"{key}: must be a mapping, got {type(value).__name__}")
    return value


def _named_mapping(value: object, key: str) -> Mapping[str, Any]:
    data = _mapping({} if value is None else value, key)
    for name in data:
        _check_name(name, f"{key}.{name}")
    return data


def _check_name(name: object, key: str) -> str:
    try:
        validate_name(name)
    except CheckDefinitionError as exc:
        raise ChecksConfigError(f"{key}: {exc}") from None
    return str(name)


def _list(value: object, key: str) -> list[Any]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ChecksConfigError(f"{key}: must be a list, got {type(value).__name__}")
    return list(value)


def _names(value: object, key: str) -> list[str]:
    return [_check_name(item, f"{key}[{i}]") for i, item in enumerate(_list(value, key))]


def _bool(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ChecksConfigError(f"{key}: must be true or false, got {value!r}")
    return value


def _paths(value: object, key: str, base_dir: Path) -> tuple[Path, ...]:
    paths = []
    for i, item in enumerate(_list(value, key)):
        if not isinstance(item, str) or not item:
            raise ChecksConfigError(f"{key}[{i}]: must be a directory path, got {item!r}")
        path = Path(item).expanduser()
        paths.append(path if path.is_absolute() else (base_dir / path).absolute())
    return tuple(paths)


def _refs(value: object) -> tuple[tuple[str, str], ...]:
    """``{name: ref}`` or ``[ref, ...]`` (named after the function) -> (name, ref) pairs."""
    if isinstance(value, Mapping):
        pairs = [(_check_name(k, f"checks.refs.{k}"), v) for k, v in value.items()]
        keys = [f"checks.refs.{name}" for name, _ in pairs]
    else:
        items = _list(value, "checks.refs")
        keys = [f"checks.refs[{i}]" for i in range(len(items))]
        pairs = [(str(item).rpartition(":")[2], item) for item in items]
    result = []
    for key, (name, ref) in zip(keys, pairs):
        module, colon, function = str(ref).partition(":")
        if not isinstance(ref, str) or not colon or not module or not function.isidentifier():
            raise ChecksConfigError(f"{key}: {ref!r} is not of the form 'module:function'")
        result.append((_check_name(name, key), ref))
    return tuple(result)


def _settings(value: object, key: str) -> CheckSettings:
    data = _mapping({} if value is None else value, key)
    unknown = sorted(set(data) - _SETTING_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_SETTING_KEYS))
        raise ChecksConfigError(f"{key}.{unknown[0]}: unknown setting (allowed: {allowed})")
    fatal = data.get("fatal")
    return CheckSettings(
        enabled=_bool(data.get("enabled", True), f"{key}.enabled"),
        fatal=None if fatal is None else _bool(fatal, f"{key}.fatal"),
        timeout_s=_seconds(data.get("timeout_s"), f"{key}.timeout_s", MAX_TIMEOUT_S),
        interval_s=_seconds(data.get("interval_s"), f"{key}.interval_s", math.inf),
    )


def _seconds(value: object, key: str, maximum: float) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ChecksConfigError(f"{key}: must be a number of seconds, got {value!r}")
    if not (math.isfinite(value) and 0 < value <= maximum):
        raise ChecksConfigError(f"{key}: must be > 0 and <= {maximum:g}, got {value!r}")
    return float(value)
