"""Parametric (bulk) job descriptions, expanded the way DIRAC's ParametricJob does.

``Parameters`` is either a count or a list of values. A count generates the values
``v[0] = ParameterStart`` and ``v[i] = v[i-1] * ParameterFactor + ParameterStep`` with
DIRAC's defaults (start 1, step 0, factor 1; floats as soon as one of them is a float).
Named sequences (``Parameters.A``, ``ParameterStart.A``, ...) run alongside and must all
have the same length; a named ``Parameters.A`` must be a list.

In every string value and string list item of each expanded job, ``%n`` becomes the
0-based job index zero-padded to the width of the largest index (``%n`` of 100 jobs runs
``00`` .. ``99``), ``%s`` the value of the plain sequence and ``%(A)s`` that of sequence
``A``. The ``Parameter*`` attributes are removed; each job records its values as
``Parameter`` (and ``Parameter.A``) and its index as ``ParameterNumber``.
``%j`` is left for :func:`substitute_job_id` once the job has its id.

The jobs of one description may take at most ``max_bytes`` together (names and values, in
characters: about their stored size): 400 jobs of a 256 KiB description once stored 207 MB
from one 0.26 MB request. Expansion stops as soon as it passes the limit, so the memory it
takes is bounded by the limit too.

A value may be a list (``Parameters.InputData = {{"/a", "/b"}, {"/c", "/d"}}``): an
attribute that is the placeholder alone (``InputData = %(InputData)s``), or a list item
that is, takes the list; inside text the list reads ``{/a,/b}``, as DIRAC substitutes it.
A ``Parameters = [ ... ]`` sub-ClassAd (2007-era JDL) is not a parametric job, as in DIRAC.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from coordinator.errors import InvalidDescription, TooLarge
from coordinator.logic.jdl import scalar_text

logger = logging.getLogger(__name__)

_COUNT = "parameters"
_SETTINGS = ("parameterstart", "parameterstep", "parameterfactor")
_DEFAULTS = {"parameterstart": 1, "parameterstep": 0, "parameterfactor": 1}
_WRITTEN = {
    "parameters": "Parameters",
    "parameterstart": "ParameterStart",
    "parameterstep": "ParameterStep",
    "parameterfactor": "ParameterFactor",
}
_RESERVED = ("parameter", "parameternumber")
_PLACEHOLDER = re.compile(r"%n|%s|%\(([A-Za-z0-9_]+)\)s")
_INTEGER = re.compile(r"\s*[+-]?[0-9]{1,18}\s*")
_NUMBER = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?\s*")
_LIMIT = 2**63  # generated values past this are a mistake, not a job parameter

# A compiled string: literal text and (key, original text) placeholders, in order.
_Part = Union[str, tuple[str, str]]


@dataclass
class _Sequence:
    label: str  # written after the dot ("" for the plain sequence)
    settings: dict[str, Any] = field(default_factory=dict)  # lower-case base name -> value


def _parameter_key(name: str) -> tuple[str, str] | None:
    base, _, label = name.partition(".")
    lowered = base.lower()
    if lowered == _COUNT or lowered in _SETTINGS:
        return lowered, label
    return None


def _is_reserved(name: str) -> bool:
    lowered = name.lower()
    return lowered in _RESERVED or lowered.startswith("parameter.")


def _is_sub_classad(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("[") and value.endswith("]")


def _sequences(description: Mapping[str, Any]) -> dict[str, _Sequence]:
    found: dict[str, _Sequence] = {}
    for name, value in description.items():
        key = _parameter_key(name)
        if key is not None and not (key[0] == _COUNT and _is_sub_classad(value)):
            base, label = key
            found.setdefault(label.lower(), _Sequence(label)).settings[base] = value
    return found


def is_parametric(description: Mapping[str, Any]) -> bool:
    """True when the description has ``Parameters`` or a named ``Parameters.X``."""
    return any(_COUNT in seq.settings for seq in _sequences(description).values())


def _attribute(seq: _Sequence, base: str) -> str:
    name = _WRITTEN[base]
    return f"{name}.{seq.label}" if seq.label else name


def _invalid(message: str, attribute: str, **details: Any) -> InvalidDescription:
    return InvalidDescription(message, details={"attribute": attribute, **details})


def _length(seq: _Sequence) -> int:
    value = seq.settings[_COUNT]
    name = _attribute(seq, _COUNT)
    if isinstance(value, (list, tuple)):
        return len(value)
    if seq.label:
        raise _invalid(f"{name} must be a list of values", name)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    raise _invalid(f"{name} must be a whole number of jobs or a list of values", name)


def _job_count(sequences: Mapping[str, _Sequence], max_jobs: int) -> int:
    count: int | None = None
    for seq in sequences.values():
        if _COUNT not in seq.settings:
            continue
        length = _length(seq)
        if count is not None and length != count:
            name = _attribute(seq, _COUNT)
            raise _invalid(
                f"{name} gives {length} values where other parameters give {count}", name
            )
        count = length
    if count is None or count <= 0:
        raise _invalid(f"the number of parametric jobs must be positive, not {count}", "Parameters")
    if count > max_jobs:
        raise _invalid(
            f"{count} parametric jobs are more than the limit of {max_jobs}",
            "Parameters",
            jobs=count,
            max_jobs=max_jobs,
        )
    return count


def _setting(seq: _Sequence, base: str) -> int | float:
    value = seq.settings.get(base, _DEFAULTS[base])
    if isinstance(value, str) and _NUMBER.fullmatch(value):  # DIRAC reads `"5"` as 5
        value = int(value) if _INTEGER.fullmatch(value) else float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) < _LIMIT:
        name = _attribute(seq, base)
        raise _invalid(f"{name} must be a number between -2**63 and 2**63", name)
    return value


def _values(seq: _Sequence, count: int) -> list[Any]:
    given = seq.settings.get(_COUNT)
    if isinstance(given, (list, tuple)):
        return list(given)
    start, step, factor = (_setting(seq, base) for base in _SETTINGS)
    # As DIRAC: the first value already takes the type the step and factor give.
    value = start * (1.0 if isinstance(factor, float) else 1) + (
        0.0 if isinstance(step, float) else 0
    )
    values = [value]
    for _ in range(1, count):
        value = value * factor + step
        if not abs(value) < _LIMIT:  # also catches inf and nan
            name = _attribute(seq, "parameterfactor")
            raise _invalid(f"the parameter sequence grows past 2**63 at job {len(values)}", name)
        values.append(value)
    return values


def _compile(text: str) -> list[_Part] | None:
    """Split a string into literals and placeholders; None when it has none."""
    if "%" not in text:
        return None
    parts: list[_Part] = []
    last = 0
    for match in _PLACEHOLDER.finditer(text):
        parts.append(text[last : match.start()])
        token = match.group()
        key = "%n" if token == "%n" else (match.group(1) or "").lower()
        parts.append((key, token))
        last = match.end()
    if last == 0:
        return None
    parts.append(text[last:])
    return parts


def _render(parts: list[_Part], texts: Mapping[str, str]) -> str:
    return "".join(part if isinstance(part, str) else texts.get(part[0], part[1]) for part in parts)


class _Template:
    """One description with its placeholders found once, rendered once per job."""

    def __init__(self, description: Mapping[str, Any]) -> None:
        self.items: list[tuple[str, Any, Any]] = []
        for name, value in description.items():
            if _parameter_key(name) is not None or _is_reserved(name):
                continue
            if isinstance(value, str):
                self.items.append((name, value, _compile(value)))
            elif isinstance(value, (list, tuple)):
                compiled = [_compile(item) if isinstance(item, str) else None for item in value]
                self.items.append((name, list(value), compiled))
            else:
                self.items.append((name, value, None))

    def render(self, texts: Mapping[str, str], lists: Mapping[str, list[Any]]) -> dict[str, Any]:
        """One job: ``texts`` replace the placeholders; a placeholder standing alone for a
        value that is a list (``lists``) becomes that list."""
        job: dict[str, Any] = {}
        for name, value, compiled in self.items:
            if isinstance(value, list):
                items: list[Any] = []
                for item, parts in zip(value, compiled):
                    whole = _alone(parts, lists)
                    if whole is not None:
                        items.extend(whole)
                    else:
                        items.append(item if parts is None else _render(parts, texts))
                job[name] = items
            else:
                whole = _alone(compiled, lists)
                if whole is not None:
                    job[name] = whole
                else:
                    job[name] = value if compiled is None else _render(compiled, texts)
        return job


def _alone(parts: list[_Part] | None, lists: Mapping[str, list[Any]]) -> list[Any] | None:
    """The list a lone placeholder (``%(A)s`` and nothing else) stands for, if it is one."""
    if parts is None or len(parts) != 3 or parts[0] or parts[2]:
        return None
    placeholder = parts[1]
    found = lists.get(placeholder[0]) if isinstance(placeholder, tuple) else None
    return list(found) if found is not None else None


def _text(value: Any) -> str:
    """A parameter value as it reads inside text: a list as DIRAC writes it, ``{/a,/b}``."""
    if isinstance(value, (list, tuple)):
        return "{" + ",".join(scalar_text(item) for item in value) + "}"
    return scalar_text(value)


def expand(
    description: Mapping[str, Any],
    *,
    max_jobs: int = 100_000,
    max_bytes: int | None = None,
    bytes_per_job: int = 0,
) -> list[dict[str, Any]]:
    """One description per parametric job; ``[dict(description)]`` when not parametric.

    ``TooLarge`` when the jobs together would take more than ``max_bytes``, each counted as
    its names and values plus ``bytes_per_job`` (what else the caller stores per job)."""
    budget = _Budget(max_bytes, bytes_per_job)
    sequences = _sequences(description)
    if not any(_COUNT in seq.settings for seq in sequences.values()):
        budget.spend(description, 1)
        return [dict(description)]
    count = _job_count(sequences, max_jobs)
    values = {key: _values(seq, count) for key, seq in sequences.items()}
    recorded = {
        key: f"Parameter.{seq.label}" if seq.label else "Parameter"
        for key, seq in sequences.items()
    }
    template = _Template(description)
    width = len(str(count - 1))
    jobs = []
    for index in range(count):
        now = {key: seq_values[index] for key, seq_values in values.items()}
        texts = {key: _text(value) for key, value in now.items()}
        texts["%n"] = str(index).zfill(width)
        lists = {key: value for key, value in now.items() if isinstance(value, list)}
        job = template.render(texts, lists)
        for key, name in recorded.items():
            job[name] = values[key][index]
        job["ParameterNumber"] = index
        budget.spend(job, count)
        jobs.append(job)
    logger.debug("expanded a parametric description into %d jobs", count)
    return jobs


class _Budget:
    """The size the expanded jobs may still take."""

    def __init__(self, max_bytes: int | None, bytes_per_job: int) -> None:
        self.max_bytes = max_bytes
        self.bytes_per_job = bytes_per_job
        self.spent = 0

    def spend(self, job: Mapping[str, Any], count: int) -> None:
        if self.max_bytes is None:
            return
        self.spent += self.bytes_per_job
        self.spent += sum(len(name) + _size(value) for name, value in job.items())
        if self.spent > self.max_bytes:
            raise TooLarge(
                f"the {count} job(s) of this description would take more than the limit of "
                f"{self.max_bytes} bytes; submit fewer or smaller jobs",
                details={"max_bytes": self.max_bytes, "jobs": count},
            )


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple)):
        return 2 + sum(_size(item) + 1 for item in value)
    return len(scalar_text(value))


def substitute_job_id(description: Mapping[str, Any], job_id: int) -> dict[str, Any]:
    """Replace ``%j`` by the job id in every string value and string list item."""
    text = str(job_id)
    result: dict[str, Any] = {}
    for name, value in description.items():
        if isinstance(value, str):
            result[name] = value.replace("%j", text)
        elif isinstance(value, (list, tuple)):
            result[name] = [i.replace("%j", text) if isinstance(i, str) else i for i in value]
        else:
            result[name] = value
    return result
