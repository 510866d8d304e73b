"""Job descriptions in JDL, JSON or YAML, and the fields the coordinator acts on.

All three formats use the same attribute names. A JSON or YAML description is a mapping of
attribute to a string, number, boolean or list of those; attribute names are looked up
case-insensitively everywhere and must not be given twice in different cases (JDL instead
keeps the last value, as DIRAC does).

:func:`job_fields` reads values the way DIRAC users write them: numbers may be numeric
strings (``NumberOfProcessors = "4"``) and a list attribute may be one comma-separated
string (``Site = "A, B"``), as DIRAC's ``getListFromExpression`` reads it.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from coordinator.errors import InvalidDescription
from coordinator.logic.bounds import (
    CORES,
    GPUS,
    MEMORY_MB,
    SECONDS,
    Bound,
    bad_character,
    describe_character,
)
from coordinator.logic.jdl import EMPTY_MESSAGE, NAME_PATTERN, parse_jdl, scalar_text

FORMATS = ("jdl", "json", "yaml")
PRIORITY_RANGE = (0, 10)
"""DIRAC's default bounds for a job's Priority."""
PRIORITY = Bound(*PRIORITY_RANGE)
CPU_SCORE_MAX = 1e6
_CAPABILITY = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}")
_FORMAT_ALIASES = {"yml": "yaml"}


def _invalid(message: str, attribute: str, **details: Any) -> InvalidDescription:
    return InvalidDescription(message, details={"attribute": attribute, **details})


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses an attribute given twice (PyYAML keeps the last silently)
    and aliases: 200 aliases of one anchor once made a 53 MB job out of a few kilobytes
    (a "billion laughs"), and a flat job description has nothing to share."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            mark = event.start_mark
            raise InvalidDescription(
                f"line {mark.line + 1}, column {mark.column + 1}: YAML aliases "
                f"(*{event.anchor}) are not accepted in job descriptions; write the value out",
                details={"line": mark.line + 1, "column": mark.column + 1, "alias": event.anchor},
            )
        return super().compose_node(parent, index)


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[str] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        lowered = key.lower() if isinstance(key, str) else None
        if lowered is not None and lowered in seen:
            mark = key_node.start_mark
            raise _invalid(
                f"attribute {key!r} is given twice",
                key,
                line=mark.line + 1,
                column=mark.column + 1,
            )
        if lowered is not None:
            seen.add(lowered)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _load_yaml(text: str) -> Any:
    try:
        # A SafeLoader subclass: no arbitrary Python objects.
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        details: dict[str, Any] = {"reason": str(exc.problem or exc)}
        where = ""
        if mark is not None:
            details.update(line=mark.line + 1, column=mark.column + 1)
            where = f"line {mark.line + 1}, column {mark.column + 1}: "
        raise InvalidDescription(
            f"{where}invalid YAML: {exc.problem or exc}", details=details
        ) from exc
    except (yaml.YAMLError, RecursionError) as exc:
        raise InvalidDescription(f"invalid YAML: {exc}", details={"reason": str(exc)}) from exc


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    seen: set[str] = set()
    for key, value in pairs:
        if key.lower() in seen:
            raise _invalid(f"attribute {key!r} is given twice", key)
        seen.add(key.lower())
        result[key] = value
    return result


def _load_json(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_json_pairs)
    except json.JSONDecodeError as exc:
        raise InvalidDescription(
            f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}",
            details={"line": exc.lineno, "column": exc.colno, "reason": exc.msg},
        ) from exc
    except (ValueError, RecursionError) as exc:  # e.g. an integer with too many digits
        raise InvalidDescription(f"invalid JSON: {exc}", details={"reason": str(exc)}) from exc


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (str, int, bool))


def _is_flat_list(value: Any) -> bool:
    """A list item may be a list of scalars (one list of files per parametric job)."""
    return isinstance(value, list) and all(_is_scalar(item) for item in value)


def _checked_mapping(loaded: Any, fmt: str) -> dict[str, Any]:
    if not isinstance(loaded, dict):
        raise InvalidDescription(
            f"a {fmt.upper()} job description must be a mapping of attribute to value",
            details={"type": type(loaded).__name__},
        )
    for name, value in loaded.items():
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise _invalid(f"{name!r} is not a valid attribute name", str(name))
        if value is None:
            raise _invalid(f"attribute {name!r} has no value", name)
        items = value if isinstance(value, list) else [value]
        if not all(_is_scalar(item) or _is_flat_list(item) for item in items):
            raise _invalid(
                f"attribute {name!r} must be a string, a finite number, a boolean "
                "or a list of those",
                name,
            )
    return loaded


def parse_description(text: str, fmt: str) -> dict[str, Any]:
    """Parse a job description given as ``jdl``, ``json`` or ``yaml`` text (a leading UTF-8
    byte-order mark is ignored; an empty description is refused in every format)."""
    kind = fmt.lower()
    kind = _FORMAT_ALIASES.get(kind, kind)
    if kind not in FORMATS:
        raise InvalidDescription(
            f"unknown description format {fmt!r} (use one of {', '.join(FORMATS)})",
            details={"format": fmt},
        )
    text = text.removeprefix("\ufeff")
    _check_characters(text)
    if kind == "jdl":
        description = parse_jdl(text)
    else:
        loaded = _load_json(text) if kind == "json" else _load_yaml(text)
        description = _checked_mapping(loaded, kind)
        if not description:
            raise InvalidDescription(EMPTY_MESSAGE)
    _check_decoded_text(description)
    return description


def _check_characters(text: str) -> None:
    """Refuse a lone surrogate or NUL in the text itself, where it is, as JDL errors are."""
    index = bad_character(text)
    if index is not None:
        line = text.count("\n", 0, index) + 1
        column = index - text.rfind("\n", 0, index)
        raise InvalidDescription(
            f"line {line}, column {column}: the description contains "
            f"{describe_character(text, index)}",
            details={"line": line, "column": column},
        )


def _check_decoded_text(description: Mapping[str, Any]) -> None:
    """Refuse a lone surrogate or NUL that an escape (JSON ``\\ud800``, YAML ``"\\0"``)
    put into a value: nothing could store or send it out again. (Names are ASCII.)"""
    for name, value in description.items():
        items = value if isinstance(value, list) else [value]
        for item in [x for i in items for x in (i if isinstance(i, list) else [i])]:
            index = bad_character(item) if isinstance(item, str) else None
            if index is not None:
                what = describe_character(item, index)
                raise _invalid(f"attribute {name!r} contains {what}", name)


def get_attribute(description: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """The value of ``name`` compared case-insensitively (an exact match wins)."""
    if name in description:
        return description[name]
    lowered = name.lower()
    for key, value in description.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return default


@dataclass(frozen=True)
class JobFields:
    """What the coordinator matches and runs on, read from one (expanded) description."""

    executable: str
    arguments: list[str]
    stdout: str
    stderr: str
    input_sandbox: list[str]
    output_sandbox: list[str]
    job_name: str
    job_group: str
    site: str
    """The one allowed site, or ANY when the job names none or several (see ``sites``)."""
    sites: list[str]
    """Allowed sites; empty means any site."""
    banned_sites: list[str]
    platform: str
    """Empty when unset or ANY."""
    tags: list[str]
    cores: int
    min_cores: int
    max_cores: int
    max_ram_mb: int
    min_ram_mb: int
    cpu_time_s: int | None
    wall_time_s: int | None
    priority: int
    container: str
    gpus: int = 0
    gpu_memory_mb: int = 0
    gpu_capability: str = ""
    """The lowest compute capability accepted (``8.0``); empty: any."""
    gpu_models: tuple[str, ...] = ()
    whole_node: bool = False
    min_cpu_score: float = 0.0


class _Attributes:
    """Case-insensitive reads over one description, indexed once."""

    def __init__(self, description: Mapping[str, Any]) -> None:
        self.description = description
        self.lowered: dict[str, Any] = {}
        for key, value in description.items():
            if isinstance(key, str):
                self.lowered.setdefault(key.lower(), value)

    def value(self, name: str) -> Any:
        if name in self.description:  # the exact spelling wins over another case
            return self.description[name]
        return self.lowered.get(name.lower())

    def get(self, *names: str) -> tuple[str, Any]:
        """The first of ``names`` that is set, and its value (None when none is)."""
        for name in names:
            value = self.value(name)
            if value is not None:
                return name, value
        return names[0], None

    def text(self, *names: str, default: str = "") -> str:
        name, value = self.get(*names)
        if value is None:
            return default
        if isinstance(value, str):
            return value
        if _is_scalar(value) and not isinstance(value, bool):
            return scalar_text(value)
        raise _invalid(f"{name} must be a string", name, type=type(value).__name__)

    def items(self, *names: str) -> list[str]:
        """All items of the list attributes ``names``, in order, without repeats."""
        result: dict[str, None] = {}  # a dict keeps the first order and drops repeats
        for name in names:
            result.update(dict.fromkeys(_list_items(name, self.value(name))))
        return list(result)

    def whole(self, *names: str, bound: Bound) -> int | None:
        name, value = self.get(*names)
        if value is None:
            return None
        number = _whole_number(value)
        if number is None:
            raise _invalid(f"{name} must be a whole number, not {value!r:.40}", name)
        if number not in bound:
            shown = str(number) if len(str(number)) <= 40 else f"{str(number)[:20]}... (too large)"
            raise _invalid(
                f"{name} must be {bound.describe()}, not {shown}",
                name,
                min=bound.low,
                max=bound.high,
            )
        return number


def _list_items(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):  # DIRAC's getListFromExpression splits a string on commas
        return [part.strip() for part in value.split(",") if part.strip()]
    values = value if isinstance(value, (list, tuple)) else [value]
    items = []
    for item in values:
        if isinstance(item, str):
            items.append(item)
        elif _is_scalar(item):
            items.append(scalar_text(item))
        else:
            raise _invalid(f"{name} must be a string or a list of strings", name)
    return items


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        stripped = value.strip()
        digits = stripped.lstrip("+-")
        if digits.isascii() and digits.isdigit() and len(digits) <= 18:
            return int(stripped)
    return None


def _arguments(attributes: _Attributes) -> list[str]:
    _, value = attributes.get("Arguments")
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return _list_items("Arguments", list(value))
    text = attributes.text("Arguments")
    try:
        return shlex.split(text)
    except ValueError as exc:  # unbalanced quotes
        raise _invalid(f"Arguments cannot be split: {exc}", "Arguments") from exc


def _sites(attributes: _Attributes) -> tuple[str, list[str], list[str]]:
    sites = attributes.items("Site")
    banned = attributes.items("BannedSites", "BannedSite")
    if any(site.upper() == "ANY" for site in sites):
        sites = []
    allowed = [site for site in sites if site not in banned]
    if sites and not allowed:
        raise _invalid("Site and BannedSites together exclude every site", "BannedSites")
    return (allowed[0] if len(allowed) == 1 else "ANY"), allowed, banned


def _platform(attributes: _Attributes) -> str:
    platforms = attributes.items("Platform")
    if len(platforms) > 1:
        raise _invalid("only one Platform may be given", "Platform", platforms=platforms)
    if not platforms or platforms[0].upper() == "ANY":
        return ""
    return platforms[0]


def _cores(attributes: _Attributes) -> tuple[int, int, int]:
    """(cores, min_cores, max_cores) from NumberOfProcessors and its Min/Max bounds."""
    exact = attributes.whole("NumberOfProcessors", bound=CORES)
    low = attributes.whole("MinNumberOfProcessors", bound=CORES)
    high = attributes.whole("MaxNumberOfProcessors", bound=CORES)
    if low and high and low > high:
        raise _invalid(
            f"MinNumberOfProcessors ({low}) is above MaxNumberOfProcessors ({high})",
            "MinNumberOfProcessors",
        )
    if exact and not (low or exact) <= exact <= (high or exact):
        raise _invalid(
            f"NumberOfProcessors ({exact}) is outside {low or exact}..{high or exact}",
            "NumberOfProcessors",
        )
    cores = exact or low or 1
    min_cores = low or cores
    max_cores = high or max(cores, min_cores)
    return cores, min_cores, max_cores


def _memory(attributes: _Attributes) -> tuple[int, int]:
    max_ram_mb = attributes.whole("MaxRAM", bound=MEMORY_MB) or 0
    min_ram_mb = attributes.whole("MinRAM", bound=MEMORY_MB) or 0
    if max_ram_mb and min_ram_mb > max_ram_mb:
        raise _invalid(f"MinRAM ({min_ram_mb}) is above MaxRAM ({max_ram_mb})", "MinRAM")
    return max_ram_mb, min_ram_mb


_YES = frozenset({"1", "yes", "true", "y"})
"""How DIRAC reads ``WholeNode``: one of these, in any case (or a JSON/YAML true)."""


def _whole_node(attributes: _Attributes) -> bool:
    _, value = attributes.get("WholeNode")
    if isinstance(value, bool):
        return value
    return value is not None and str(value).strip().lower() in _YES


def _gpus(attributes: _Attributes, tags: list[str]) -> tuple[int, int, str, tuple[str, ...]]:
    """(count, memory MiB, capability, models). A job asking anything of a GPU, or tagged
    ``GPU`` as DIRAC jobs are, needs at least one."""
    count = attributes.whole("NumberOfGPUs", bound=GPUS)
    memory_mb = attributes.whole("GPUMemoryMB", bound=MEMORY_MB) or 0
    capability = attributes.text("MinGPUCapability").strip()
    if capability and not _CAPABILITY.fullmatch(capability):
        raise _invalid(
            f"MinGPUCapability must be a version such as 8.0, not {capability!r:.40}",
            "MinGPUCapability",
        )
    models = tuple(attributes.items("GPUModel", "GPUModels"))
    asked = bool(memory_mb or capability or models) or any(t.upper() == "GPU" for t in tags)
    if count is None:
        count = 1 if asked else 0
    elif count == 0 and (memory_mb or capability or models):
        raise _invalid("NumberOfGPUs is 0 but GPU requirements are given", "NumberOfGPUs")
    return count, memory_mb, capability, models


def _cpu_score(attributes: _Attributes) -> float:
    name, value = attributes.get("MinCPUScore")
    if value is None:
        return 0.0
    try:
        score = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        score = math.nan
    if not math.isfinite(score) or not 0 <= score <= CPU_SCORE_MAX:
        raise _invalid(f"{name} must be a number from 0 to {CPU_SCORE_MAX:g}", name)
    return score


def _priority(attributes: _Attributes) -> int:
    priority = attributes.whole("Priority", bound=PRIORITY)
    return 1 if priority is None else priority


def job_fields(description: Mapping[str, Any]) -> JobFields:
    """Read and check the fields of one job; InvalidDescription names the bad attribute."""
    attributes = _Attributes(description)
    executable = attributes.text("Executable")
    if not executable.strip():
        raise _invalid("Executable is required", "Executable")
    cores, min_cores, max_cores = _cores(attributes)
    max_ram_mb, min_ram_mb = _memory(attributes)
    site, sites, banned_sites = _sites(attributes)
    tags = attributes.items("Tags", "RequiredTag", "Tag")
    gpus, gpu_memory_mb, gpu_capability, gpu_models = _gpus(attributes, tags)
    return JobFields(
        executable=executable,
        arguments=_arguments(attributes),
        stdout=attributes.text("StdOutput", default="std.out"),
        stderr=attributes.text("StdError", default="std.err"),
        input_sandbox=attributes.items("InputSandbox"),
        output_sandbox=attributes.items("OutputSandbox"),
        job_name=attributes.text("JobName"),
        job_group=attributes.text("JobGroup"),
        site=site,
        sites=sites,
        banned_sites=banned_sites,
        platform=_platform(attributes),
        tags=tags,
        cores=cores,
        min_cores=min_cores,
        max_cores=max_cores,
        max_ram_mb=max_ram_mb,
        min_ram_mb=min_ram_mb,
        cpu_time_s=attributes.whole("CPUTime", "MaxCPUTime", bound=SECONDS),
        wall_time_s=attributes.whole("WallTime", bound=SECONDS),
        priority=_priority(attributes),
        container=attributes.text("Container", "Image"),
        gpus=gpus,
        gpu_memory_mb=gpu_memory_mb,
        gpu_capability=gpu_capability,
        gpu_models=gpu_models,
        whole_node=_whole_node(attributes),
        min_cpu_score=_cpu_score(attributes),
    )
