"""Hypothesis over job descriptions: whatever text arrives as JDL, JSON or YAML, parsing,
parametric expansion and reading the job's fields either succeed or raise our own typed
error (``CoordinatorError``: a 4xx with ``{code, message, details}``), never anything else;
and whatever they accept can be stored and sent out again (UTF-8 JSON, numbers in range).

``FUZZ_EXAMPLES`` (default 300 per test) sets the number of examples; set it higher for a
longer local run, e.g. ``FUZZ_EXAMPLES=20000``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.errors import CoordinatorError
from coordinator.logic.bounds import CORES, MEMORY_MB, SECONDS, bad_character
from coordinator.logic.description import job_fields, parse_description
from coordinator.logic.jdl import to_jdl
from coordinator.logic.parametric import expand, substitute_job_id

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
MAX_JOBS = 200
MAX_BYTES = 1024 * 1024

KNOWN = [
    "Executable", "Arguments", "StdOutput", "StdError", "InputSandbox", "OutputSandbox",
    "JobName", "JobGroup", "Site", "BannedSites", "Platform", "Tags", "NumberOfProcessors",
    "MinNumberOfProcessors", "MaxNumberOfProcessors", "MaxRAM", "MinRAM", "CPUTime",
    "WallTime", "Priority", "Container", "Parameters", "ParameterStart", "ParameterStep",
    "ParameterFactor", "Parameters.A", "ParameterStart.A", "Owner", "VO",
]  # fmt: skip

# Every character, lone surrogates and NUL included.
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
NAMES = st.one_of(
    st.sampled_from(KNOWN), st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,12}", fullmatch=True), ANY_TEXT
)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.integers(min_value=-5, max_value=300),
    st.floats(allow_nan=True, allow_infinity=True),
)
SCALARS = st.one_of(
    ANY_TEXT,
    NUMBERS,
    st.booleans(),
    st.none(),
    st.sampled_from(["%n", "%s", "%j", "%(A)s", "/bin/echo"]),
)
VALUES = st.one_of(
    SCALARS, st.lists(SCALARS, max_size=5), st.dictionaries(ANY_TEXT, SCALARS, max_size=2)
)
# Mostly with a usable Executable, so that the other attributes are read too.
DESCRIPTIONS = st.tuples(
    st.one_of(st.just("/bin/echo"), ANY_TEXT), st.dictionaries(NAMES, VALUES, max_size=8)
).map(lambda pair: {"Executable": pair[0], **pair[1]})  # fmt: skip


def _accept(text: str, fmt: str) -> None:
    """Run the submission path's pure part; any error must be one of ours."""
    try:
        description = parse_description(text, fmt)
        jobs = expand(description, max_jobs=MAX_JOBS, max_bytes=MAX_BYTES)
        fields = [job_fields(substitute_job_id(job, 7)) for job in jobs]
    except CoordinatorError as exc:
        assert 400 <= exc.http_status < 500, exc
        json.dumps({"code": exc.code, "message": exc.message, "details": exc.details})
        return
    _check_storable(description, jobs, fields)


def _check_storable(description: Any, jobs: list[Any], fields: list[Any]) -> None:
    for job, field in zip(jobs, fields):
        json.dumps(job, allow_nan=False).encode("utf-8")  # stored and sent out as JSON
        assert field.executable.strip()
        assert all(bad_character(text) is None for text in _texts(job))
        assert field.cores in CORES and field.min_cores in CORES and field.max_cores in CORES
        assert field.max_ram_mb in MEMORY_MB and field.min_ram_mb in MEMORY_MB
        for seconds in (field.cpu_time_s, field.wall_time_s):
            assert seconds is None or seconds in SECONDS
        assert 0 <= field.priority <= 10
    assert isinstance(description, dict)


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for key, item in value.items() for t in _texts(key) + _texts(item)]
    if isinstance(value, list):
        return [t for item in value for t in _texts(item)]
    return []


@FUZZ
@given(text=ANY_TEXT | st.text(max_size=300), fmt=st.sampled_from(["jdl", "json", "yaml", "xml"]))
def test_any_text_in_any_format(text: str, fmt: str) -> None:
    _accept(text, fmt)


@st.composite
def jdl_texts(draw: st.DrawFn) -> str:
    """JDL-shaped text: attributes with numbers, strings, lists and brackets, and noise."""
    parts = []
    for name, value in draw(DESCRIPTIONS).items():
        rendered = draw(st.one_of(st.just(_jdl_value(value)), ANY_TEXT))
        parts.append(f"{name} = {rendered}")
    separator = draw(st.sampled_from([";", ";\n", "\n", "; ", ";;"]))
    body = separator.join(parts)
    noise = draw(st.sampled_from(["", "[", "]", "{", "/*", "#", '"', "==", "\\"]))
    where = draw(st.integers(min_value=0, max_value=len(body)))
    body = body[:where] + noise + body[where:]
    return draw(st.sampled_from([body, f"[{body}]", f"[\n{body};\n]"]))


def _jdl_value(value: Any) -> str:
    if isinstance(value, list):
        return "{" + ", ".join(_jdl_value(item) for item in value) + "}"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


@FUZZ
@given(text=jdl_texts())
def test_jdl_shaped_text(text: str) -> None:
    _accept(text, "jdl")


@FUZZ
@given(description=DESCRIPTIONS, ascii_only=st.booleans())
def test_json_descriptions(description: dict[Any, Any], ascii_only: bool) -> None:
    text = json.dumps(description, ensure_ascii=ascii_only)
    _accept(text, "json")


@FUZZ
@given(description=DESCRIPTIONS, style=st.sampled_from([None, '"', "'", "|"]))
def test_yaml_descriptions(description: dict[Any, Any], style: str | None) -> None:
    try:
        text = yaml.safe_dump(description, default_style=style, allow_unicode=True)
    except yaml.YAMLError:
        return  # PyYAML cannot write it; nothing to send
    _accept(text, "yaml")


YAML_TRICKS = st.sampled_from(
    [
        "&a x", "*a", "<<: *a", "!!binary aGk=", "!!set {a, b}", "!!python/object:os.system x",
        "2001-12-14", "? [a, b]\n: c", "{a: 1, A: 2}", "- a\n- b", "!!float .nan", ".inf",
        "0x1F", "1_000_000_000_000_000_000_000_000", "~", "!!str", "'\\ud800'", '"\\ud800"',
        '"\\0"', "'\\x00'", "&a [*a]",
    ]
)  # fmt: skip


@FUZZ
@given(
    lines=st.lists(st.tuples(st.sampled_from(KNOWN), YAML_TRICKS), min_size=1, max_size=6),
    indent=st.sampled_from(["", "  "]),
)
def test_yaml_tricks(lines: list[tuple[str, str]], indent: str) -> None:
    text = "Executable: /bin/true\n" + "".join(f"{indent}{k}: {v}\n" for k, v in lines)
    _accept(text, "yaml")


@FUZZ
@given(
    count=st.one_of(st.integers(min_value=-3, max_value=MAX_JOBS + 3), st.just(10**30), ANY_TEXT),
    start=NUMBERS,
    step=NUMBERS,
    factor=NUMBERS,
    template=st.sampled_from(["%n", "%s", "%j-%n-%s", "%(A)s", "x" * 5000 + "%s"]),
)
def test_parametric_descriptions(
    count: Any, start: Any, step: Any, factor: Any, template: str
) -> None:
    description = {
        "Executable": "/bin/echo",
        "Arguments": template,
        "Parameters": count,
        "ParameterStart": start,
        "ParameterStep": step,
        "ParameterFactor": factor,
    }
    for text, fmt in ((json.dumps(description), "json"), (_jdl_or_none(description), "jdl")):
        if text is not None:
            _accept(text, fmt)


def _jdl_or_none(description: dict[str, Any]) -> str | None:
    try:
        return to_jdl(description)
    except CoordinatorError:
        return None
