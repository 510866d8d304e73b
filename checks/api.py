"""The check plugin API: results, context, specs and the ``@check`` decorator.

Everything here is re-exported by ``checks/__init__.py``, which is the frozen public contract.
Mistakes in a declaration raise ``CheckDefinitionError`` at decoration time, so a community
learns about a broken check when it is written, not on a worker node.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from checks.errors import CheckDefinitionError
from protocol import CheckStatus

API_VERSION = 1
"""Bumped only when a check written for an older version can no longer run."""

Status = CheckStatus

MAX_TIMEOUT_S = 3600.0
"""A check that needs more than an hour is not a node check."""

SPEC_ATTRIBUTE = "__gridpilot_check__"
"""Attribute under which ``@check`` stores a function's CheckSpec."""

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_REF_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


class CheckSource(str, enum.Enum):
    """Where a check came from; shown in reports so a site knows whom to ask."""

    BUILTIN = "builtin"
    ENTRYPOINT = "entrypoint"
    CONFIG = "config"
    SCRIPT = "script"


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """What a check function returns. ``status`` may be given as its string value."""

    status: CheckStatus
    message: str = ""
    facts: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "status", CheckStatus(self.status))
        except ValueError:
            allowed = ", ".join(s.value for s in CheckStatus)
            raise ValueError(
                f"CheckResult.status {self.status!r} is not one of: {allowed}"
            ) from None
        if not isinstance(self.message, str):
            raise TypeError(f"CheckResult.message must be a str, got {type(self.message).__name__}")
        if not isinstance(self.facts, Mapping) or not all(isinstance(k, str) for k in self.facts):
            raise TypeError("CheckResult.facts must be a mapping with str keys")
        if isinstance(self.tags, str) or not all(isinstance(t, str) for t in self.tags):
            raise TypeError("CheckResult.tags must be a sequence of str (not a single str)")
        object.__setattr__(self, "tags", tuple(self.tags))


@dataclasses.dataclass(frozen=True)
class CheckContext:
    """What a check function receives: its options, known node facts, the work dir, a logger."""

    options: Mapping[str, Any]
    node_facts: Mapping[str, Any]
    workdir: Path
    logger: logging.Logger


@dataclasses.dataclass(frozen=True)
class CheckSpec:
    """How to run one check: its name, where its function lives and its limits."""

    name: str
    ref: str
    """``module:function``, importable in the check's child process."""
    fatal: bool = False
    timeout_s: float = 10.0
    interval_s: Optional[float] = None
    source: CheckSource = CheckSource.CONFIG
    origin: str = ""
    """Where exactly it came from: a distribution, a config file, a script path."""
    script: Optional[str] = None
    """An executable (Nagios convention) the child process runs instead of ``ref``."""
    load_error: Optional[str] = None
    """Why this check cannot be loaded; it is then reported as failed, never dropped."""

    def __post_init__(self) -> None:
        validate_name(self.name)
        if not isinstance(self.ref, str) or not _REF_PATTERN.match(self.ref):
            raise CheckDefinitionError(
                f"check {self.name!r}: ref {self.ref!r} is not of the form 'module:function'"
            )
        if not isinstance(self.fatal, bool):
            raise CheckDefinitionError(f"check {self.name!r}: fatal must be True or False")
        _validate_seconds(self.name, "timeout_s", self.timeout_s, MAX_TIMEOUT_S)
        if self.interval_s is not None:
            _validate_seconds(self.name, "interval_s", self.interval_s, math.inf)
        object.__setattr__(self, "source", CheckSource(self.source))


def validate_name(name: object) -> None:
    """Raise CheckDefinitionError unless ``name`` is a usable check name."""
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise CheckDefinitionError(
            f"check name {name!r} must be 1-64 characters of letters, digits, '_', '.', '-'"
            " not starting with '.' or '-'"
        )


def _validate_seconds(name: str, field: str, value: object, maximum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckDefinitionError(f"check {name!r}: {field} must be a number of seconds")
    if not (math.isfinite(value) and 0 < value <= maximum):
        limit = f" and <= {maximum:g}" if math.isfinite(maximum) else ""
        raise CheckDefinitionError(f"check {name!r}: {field} must be > 0{limit}, got {value!r}")


CheckFunction = Callable[[CheckContext], CheckResult]
F = TypeVar("F", bound=CheckFunction)


def check(
    name: str | None = None,
    *,
    fatal: bool = False,
    timeout_s: float = 10.0,
    interval_s: float | None = None,
) -> Callable[[F], F]:
    """Declare ``def fn(ctx: CheckContext) -> CheckResult`` a node check.

    The function is returned unchanged (so it stays directly callable in tests) with a
    CheckSpec attached. ``name`` defaults to the function's name.
    """
    if callable(name):
        raise CheckDefinitionError("@check must be called: write @check() or @check('name')")

    def decorate(func: F) -> F:
        _validate_function(func)
        spec = CheckSpec(
            name=func.__name__ if name is None else name,
            ref=f"{func.__module__}:{func.__qualname__}",
            fatal=fatal,
            timeout_s=timeout_s,
            interval_s=interval_s,
        )
        setattr(func, SPEC_ATTRIBUTE, spec)
        return func

    return decorate


def _validate_function(func: object) -> None:
    if not inspect.isfunction(func):
        raise CheckDefinitionError(f"@check applies to a function, got {func!r}")
    where = f"{func.__module__}.{func.__qualname__}"
    if not func.__qualname__.isidentifier():
        raise CheckDefinitionError(
            f"@check: {where} must be a named function defined at module level,"
            " so that a child process can import it"
        )
    if inspect.iscoroutinefunction(func) or inspect.isgeneratorfunction(func):
        raise CheckDefinitionError(f"@check: {where} must be a plain function, not async/generator")
    try:
        inspect.signature(func).bind(object())
    except TypeError:
        raise CheckDefinitionError(
            f"@check: {where}{inspect.signature(func)} must take exactly one argument,"
            " the CheckContext"
        ) from None


def attached_spec(obj: object) -> CheckSpec | None:
    """The CheckSpec that ``@check`` attached to ``obj``, if any."""
    spec = getattr(obj, SPEC_ATTRIBUTE, None)
    return spec if isinstance(spec, CheckSpec) else None
