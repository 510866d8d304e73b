"""The frozen public contract of ``checks``: names, signatures, and loud declarations."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import checks
from checks import (
    API_VERSION,
    CheckContext,
    CheckDefinitionError,
    CheckResult,
    CheckSource,
    CheckSpec,
    Status,
    check,
)
from protocol import CheckStatus

FROZEN_ALL = [
    "API_VERSION",
    "CheckContext",
    "CheckDefinitionError",
    "CheckLoadError",
    "CheckResult",
    "CheckSource",
    "CheckSpec",
    "ChecksError",
    "Status",
    "check",
]


def _parameters(func: Any) -> list[tuple[str, str, Any, Any]]:
    return [
        (p.name, p.kind.name, p.default, p.annotation)
        for p in inspect.signature(func).parameters.values()
    ]


def _fields(cls: Any) -> list[tuple[str, Any]]:
    return [(f.name, f.type) for f in dataclasses.fields(cls)]


def test_all_is_frozen() -> None:
    assert checks.__all__ == FROZEN_ALL
    for name in FROZEN_ALL:
        assert hasattr(checks, name)


def test_api_version_and_status_are_the_wire_status() -> None:
    assert API_VERSION == 1
    assert Status is CheckStatus
    assert [s.value for s in Status] == ["ok", "warn", "fail", "skip", "unknown", "timeout"]
    assert [s.value for s in CheckSource] == ["builtin", "entrypoint", "config", "script"]


def test_check_signature_is_frozen() -> None:
    assert _parameters(check) == [
        ("name", "POSITIONAL_OR_KEYWORD", None, "str | None"),
        ("fatal", "KEYWORD_ONLY", False, "bool"),
        ("timeout_s", "KEYWORD_ONLY", 10.0, "float"),
        ("interval_s", "KEYWORD_ONLY", None, "float | None"),
    ]


def test_dataclass_fields_are_frozen() -> None:
    assert _fields(CheckResult) == [
        ("status", "CheckStatus"),
        ("message", "str"),
        ("facts", "Mapping[str, Any]"),
        ("tags", "tuple[str, ...]"),
    ]
    assert _fields(CheckContext) == [
        ("options", "Mapping[str, Any]"),
        ("node_facts", "Mapping[str, Any]"),
        ("workdir", "Path"),
        ("logger", "logging.Logger"),
    ]
    assert _fields(CheckSpec) == [
        ("name", "str"),
        ("ref", "str"),
        ("fatal", "bool"),
        ("timeout_s", "float"),
        ("interval_s", "Optional[float]"),
        ("source", "CheckSource"),
        ("origin", "str"),
        ("script", "Optional[str]"),
        ("load_error", "Optional[str]"),
    ]
    for cls in (CheckResult, CheckContext, CheckSpec):
        params: Any = getattr(cls, "__dataclass_params__")  # noqa: B009
        assert params.frozen


@check("scratch", fatal=True, timeout_s=2.5, interval_s=600)
def scratch(ctx: CheckContext) -> CheckResult:
    return CheckResult(Status.OK, "scratch ok", facts={"workdir": str(ctx.workdir)})


@check()
def default_named(ctx: CheckContext) -> CheckResult:
    return CheckResult("warn")  # type: ignore[arg-type]


def test_decorated_function_keeps_working_and_carries_its_spec(tmp_path: Path) -> None:
    ctx = CheckContext({}, {}, tmp_path, logging.getLogger("test"))
    assert scratch(ctx) == CheckResult(Status.OK, "scratch ok", {"workdir": str(tmp_path)})
    assert scratch.__gridpilot_check__ == CheckSpec(  # type: ignore[attr-defined]
        name="scratch",
        ref=f"{__name__}:scratch",
        fatal=True,
        timeout_s=2.5,
        interval_s=600,
    )
    assert default_named.__gridpilot_check__.name == "default_named"  # type: ignore[attr-defined]
    assert default_named(ctx).status is Status.WARN


def _one_arg(ctx: CheckContext) -> CheckResult:
    return CheckResult(Status.OK)


def _no_args() -> CheckResult:
    return CheckResult(Status.OK)


def _two_args(ctx: CheckContext, extra: int) -> CheckResult:
    return CheckResult(Status.OK)


async def _coroutine(ctx: CheckContext) -> CheckResult:
    return CheckResult(Status.OK)


@pytest.mark.parametrize(
    ("target", "complaint"),
    [
        (_no_args, "exactly one argument"),
        (_two_args, "exactly one argument"),
        (_coroutine, "not async"),
        (42, "applies to a function"),
        (lambda ctx: None, "module level"),
    ],
)
def test_wrong_targets_are_refused_at_decoration(target: Any, complaint: str) -> None:
    with pytest.raises(CheckDefinitionError, match=complaint):
        check()(target)


def test_nested_function_is_refused() -> None:
    with pytest.raises(CheckDefinitionError, match="module level"):

        @check()
        def inner(ctx: CheckContext) -> CheckResult:
            return CheckResult(Status.OK)


def test_bare_decorator_is_refused_with_a_hint() -> None:
    with pytest.raises(CheckDefinitionError, match=r"write @check\(\)"):
        check(_one_arg)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "has space", "-leading", "x" * 65, "ünïcode", 7])
def test_bad_names_are_refused(name: Any) -> None:
    with pytest.raises(CheckDefinitionError, match="check name"):
        check(name)(_one_arg)


@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-10, max_value=10_000),
        st.booleans(),
        st.text(max_size=3),
        st.none(),
    )
)
def test_timeout_is_accepted_exactly_when_it_is_a_sane_number_of_seconds(value: Any) -> None:
    sane = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value <= 3600
    )
    if sane:
        assert check(timeout_s=value)(_one_arg).__gridpilot_check__.timeout_s == value  # type: ignore[attr-defined]
    else:
        with pytest.raises(CheckDefinitionError, match="timeout_s"):
            check(timeout_s=value)(_one_arg)


@pytest.mark.parametrize("interval", [0, -1, math.inf, "60", True])
def test_bad_interval_is_refused(interval: Any) -> None:
    with pytest.raises(CheckDefinitionError, match="interval_s"):
        check(interval_s=interval)(_one_arg)


def test_result_refuses_unknown_status_and_bad_tags() -> None:
    with pytest.raises(ValueError, match="not one of: ok, warn"):
        CheckResult("green")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a single str"):
        CheckResult(Status.OK, tags="GPU")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str keys"):
        CheckResult(Status.OK, facts={1: "x"})  # type: ignore[dict-item]
    assert CheckResult(Status.OK, tags=["GPU"]).tags == ("GPU",)  # type: ignore[arg-type]


def test_spec_refuses_a_malformed_ref() -> None:
    with pytest.raises(CheckDefinitionError, match="module:function"):
        CheckSpec("x", "just_a_module")
