"""What numbers and text the coordinator accepts and stores.

Every value that comes in (a job description, a pilot's registration, match request,
heartbeat or report, an admin's token request) is checked here before it reaches the
database, so that what is stored can always be read back, matched and sent out again:

- numbers within the range of what they mean (cores, memory, seconds) and of the columns
  that hold them (PostgreSQL's ``integer`` is 32 bits), floats finite;
- text without lone surrogates (Python's JSON reader lets ``"\\ud800"`` through; no UTF-8
  writer can encode it) or NUL characters (PostgreSQL refuses them in text);
- bounded sizes, so one request cannot make the coordinator store or send out far more
  than it received.

A value out of bounds is a 400 naming the field (or the job description's attribute).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import re
from collections.abc import Mapping
from typing import Any, Union

from coordinator.errors import BadRequest, TooLarge

logger = logging.getLogger(__name__)

Number = Union[int, float]


@dataclasses.dataclass(frozen=True)
class Bound:
    """An inclusive range of numbers."""

    low: Number
    high: Number

    def __contains__(self, value: Number) -> bool:
        return self.low <= value <= self.high

    def describe(self) -> str:
        return f"between {self.low} and {self.high}"


CORES = Bound(1, 4096)
"""Cores of one job or one pilot: more than any node has today, far from any overflow."""
FREE_CORES = Bound(0, CORES.high)
GPUS = Bound(0, 1024)
"""GPUs of one job or node."""
MEMORY_MB = Bound(0, 2**24)
"""Memory in MB (16 TiB)."""
SECONDS = Bound(0, 2**31 - 1)
"""Durations in whole seconds (68 years): what a 32-bit column holds."""
INT32 = Bound(-(2**31), 2**31 - 1)
INT64 = Bound(-(2**63), 2**63 - 1)
NON_NEGATIVE_INT64 = Bound(0, INT64.high)
NON_NEGATIVE_FLOAT = Bound(0.0, 1e15)

TEXT_MAX_CHARS = 64 * 1024
"""The longest string field a message may carry, unless ``FIELD_MAX_CHARS`` says less."""
LIST_MAX_ITEMS = 1024
"""The most items a list field of a pilot's or admin's message may hold (tags, checks...)."""
NESTING_MAX = 32
"""The deepest nesting of lists and mappings a message (or job description) may have."""
PILOT_MESSAGE_MAX_BYTES = 256 * 1024
"""A registration or state report's size as JSON; the checks of a node take about 5 KiB."""

FIELD_BOUNDS: Mapping[str, Bound] = {
    # Every protocol message field of this name means the same, whatever the message.
    "cores": CORES,
    "cores_free": FREE_CORES,
    "min_cores": FREE_CORES,
    "gpus": GPUS,
    "memory_mb": MEMORY_MB,
    "memory_free_mb": MEMORY_MB,
    "disk_free_mb": Bound(0, 2**53),
    "time_left_s": SECONDS,
    "ttl_s": SECONDS,
    "n": Bound(1, INT32.high),
    "protocol_version": Bound(0, INT32.high),
    "exit_code": INT32,
    "job_id": NON_NEGATIVE_INT64,
    "rss_bytes": NON_NEGATIVE_INT64,
    "max_rss_bytes": NON_NEGATIVE_INT64,
    "cpu_s": NON_NEGATIVE_FLOAT,
    "wall_s": NON_NEGATIVE_FLOAT,
    "duration_s": NON_NEGATIVE_FLOAT,
}
FIELD_MAX_CHARS: Mapping[str, int] = {
    # Fields stored in bounded columns (coordinator/store/schema.py).
    "hostname": 255,
    "site": 255,
    "ce": 255,
    "batch_system": 64,
    "batch_job_id": 255,
    "pilot_version": 64,
    "platform": 255,
    "subject": 255,
    "vo": 255,
    "group": 255,
    "token_id": 64,
    "name": 255,
    "source": 255,
    "tags": 255,
    "container_runtimes": 64,
    "id": 64,
    "vendor": 32,
    "model": 255,
    "capability": 32,
    "driver": 64,
    "cuda": 32,
}
CHECKED_ELSEWHERE = frozenset({"description"})
"""A job description's text: ``coordinator.logic.description`` checks it, naming the line
and column or the attribute; its size is bounded by the submission's expanded size."""

_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")


def bad_character(text: str) -> int | None:
    """The index of the first lone surrogate or NUL in ``text``, or None."""
    found = _BAD_CHARACTER.search(text)
    return None if found is None else found.start()


def describe_character(text: str, index: int) -> str:
    return (
        "a NUL character" if text[index] == "\x00" else f"a lone surrogate U+{ord(text[index]):04X}"
    )


def clean_text(text: str) -> str:
    """``text`` with lone surrogates and NUL replaced by U+FFFD: for what was stored before
    these checks existed, so reading it never fails."""
    return _BAD_CHARACTER.sub("\ufffd", text)


def clean_value(value: Any) -> Any:
    """A decoded JSON value with every string cleaned, non-finite floats as None."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [clean_value(item) for item in value]
    if isinstance(value, dict):
        return {clean_text(str(key)): clean_value(item) for key, item in value.items()}
    return value


def stored_json(text: str | None, default: Any) -> Any:
    """A JSON column decoded for reading, whatever it holds: cleaned (``clean_value``), or
    ``default`` (logged) when it does not decode, so one bad row never fails a listing."""
    try:
        return clean_value(json.loads(text or "null"))
    except (ValueError, RecursionError) as exc:
        logger.warning("a stored JSON value does not decode (%s): %.80r", exc, text)
        return default


def stored_mapping(text: str | None) -> dict[str, Any]:
    """A stored JSON object (a job's description, a pilot's facts), readable whatever the
    row holds: ``{}`` for anything else."""
    value = stored_json(text, {})
    return value if isinstance(value, dict) else {}


def _refuse(field: str, message: str, **details: Any) -> BadRequest:
    return BadRequest(f"{field}: {message}", details={"field": field, **details})


def check_number(field: str, value: Number, bound: Bound) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise _refuse(field, f"must be a finite number, not {value}")
    if value not in bound:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise _refuse(
            field, f"must be {bound.describe()}, not {shown}", min=bound.low, max=bound.high
        )


def check_text(field: str, text: str, max_chars: int | None = TEXT_MAX_CHARS) -> None:
    index = bad_character(text)
    if index is not None:
        raise _refuse(
            field, f"contains {describe_character(text, index)} at {index}", position=index
        )
    if max_chars is not None and len(text) > max_chars:
        raise _refuse(
            field, f"is {len(text)} characters long, more than {max_chars}", max_chars=max_chars
        )


def check_message(message: Any) -> None:
    """Check every field of a decoded protocol message (a dataclass), nested ones too:
    numbers in ``FIELD_BOUNDS`` (others within 64 bits, floats finite), text clean and
    within ``FIELD_MAX_CHARS`` (else ``TEXT_MAX_CHARS``), lists of at most
    ``LIST_MAX_ITEMS``, nesting at most ``NESTING_MAX`` deep."""
    _MessageWalk(type(message).__name__).value("", message)


class _MessageWalk:
    """One walk over a message. The path to the current value is kept as a list of parts
    and joined only for an error: pilots' heartbeats are checked on the hot path."""

    def __init__(self, root: str) -> None:
        self.trail = [root]

    def where(self, suffix: str = "") -> str:
        return "".join(self.trail) + suffix

    def value(self, name: str, value: Any) -> None:
        kind = type(value)
        if kind is str:
            if name not in CHECKED_ELSEWHERE:
                self.text(value, FIELD_MAX_CHARS.get(name, TEXT_MAX_CHARS))
        elif kind is int or kind is float:
            bound = FIELD_BOUNDS.get(name, INT64)
            if not (value in bound and (kind is int or math.isfinite(value))):
                check_number(self.where(), value, bound)
        elif value is None or kind is bool:
            return
        elif len(self.trail) > NESTING_MAX:
            raise _refuse(self.where(), f"is nested more than {NESTING_MAX} levels deep")
        elif isinstance(value, (list, tuple)):
            self.items(name, value)
        elif isinstance(value, Mapping):
            self.mapping(value)
        elif dataclasses.is_dataclass(value):
            for field_name in _field_names(kind):
                self.child(f".{field_name}", field_name, getattr(value, field_name))
        elif isinstance(value, enum.Enum):
            return  # one of a fixed set of values
        elif isinstance(value, str):
            self.value(name, str(value))
        elif isinstance(value, (int, float)):
            self.value(name, float(value) if isinstance(value, float) else int(value))

    def child(self, part: str, name: str, value: Any) -> None:
        self.trail.append(part)
        self.value(name, value)
        self.trail.pop()

    def text(self, text: str, max_chars: int) -> None:
        if len(text) > max_chars or bad_character(text) is not None:
            check_text(self.where(), text, max_chars)

    def items(self, name: str, values: list[Any] | tuple[Any, ...]) -> None:
        if len(values) > LIST_MAX_ITEMS:
            raise _refuse(self.where(), f"has {len(values)} items, more than {LIST_MAX_ITEMS}")
        for position, item in enumerate(values):
            self.child(f"[{position}]", name, item)

    def mapping(self, values: Mapping[Any, Any]) -> None:
        if len(values) > LIST_MAX_ITEMS:
            raise _refuse(self.where(), f"has {len(values)} entries, more than {LIST_MAX_ITEMS}")
        for key, item in values.items():
            key_text = str(key)
            if len(key_text) > FIELD_MAX_CHARS["name"] or bad_character(key_text) is not None:
                check_text(self.where(" key"), key_text, FIELD_MAX_CHARS["name"])
            # A mapping's keys are free names (facts): only the generic bounds apply.
            self.child(f".{key_text}", "", item)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def check_pilot_message(message: Any) -> None:
    """``check_message`` plus a size cap for what a pilot's registration or state report
    stores (facts, tags, check results), since every listing of pilots sends it out again."""
    check_message(message)
    size = len(json.dumps(message.to_dict(), default=str))
    if size > PILOT_MESSAGE_MAX_BYTES:
        name = type(message).__name__
        raise TooLarge(
            f"{name}: {size} bytes as JSON, more than {PILOT_MESSAGE_MAX_BYTES}",
            details={"field": name, "size_bytes": size, "max_bytes": PILOT_MESSAGE_MAX_BYTES},
        )
