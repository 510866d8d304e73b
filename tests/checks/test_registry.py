"""Finding checks: the built-ins and ``module:function`` references."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from checks import CheckDefinitionError, CheckLoadError, CheckSource, CheckSpec
from checks.registry import builtin_checks, load_ref
from tests.checks.conftest import WriteModule


def test_builtins_are_listed_in_report_order_with_their_limits() -> None:
    specs = builtin_checks()
    assert [s.name for s in specs] == [
        *("python", "platform", "cores", "memory", "disk", "load", "timeleft", "userns"),
        *("containers", "cvmfs", "gpu", "cpuspeed", "coordinator", "clock"),
    ]
    assert {s.source for s in specs} == {CheckSource.BUILTIN}
    fatal = {s.name for s in specs if s.fatal}
    assert fatal == {"python", "cores", "memory", "disk"}
    assert all(0 < s.timeout_s <= 20 for s in specs)


def test_load_ref_finds_a_check_on_the_search_path(
    search_dir: Path, write_module: WriteModule
) -> None:
    module = write_module(
        """
        @check("cvmfs-lhcb", fatal=True, timeout_s=3)
        def cvmfs(ctx: CheckContext) -> CheckResult:
            return CheckResult(Status.OK)
        """
    )
    path_before = list(sys.path)
    spec = load_ref(f"{module}:cvmfs", search_path=[search_dir])
    assert spec == CheckSpec(
        name="cvmfs-lhcb",
        ref=f"{module}:cvmfs",
        fatal=True,
        timeout_s=3,
        source=CheckSource.CONFIG,
    )
    assert sys.path == path_before


@pytest.mark.parametrize(
    ("ref", "complaint"),
    [
        ("no_colon_here", "not of the form"),
        ("no_such_module_anywhere:fn", "No module named 'no_such_module_anywhere'"),
        ("checks.builtin.disk:no_such_function", "has no 'no_such_function'"),
    ],
)
def test_unloadable_refs_raise_load_errors(ref: str, complaint: str) -> None:
    with pytest.raises(CheckLoadError, match=complaint):
        load_ref(ref)


def test_module_raising_on_import_is_a_load_error(
    search_dir: Path, write_module: WriteModule
) -> None:
    module = write_module("raise ImportError('needs libcvmfs')\n")
    with pytest.raises(CheckLoadError, match="ImportError: needs libcvmfs"):
        load_ref(f"{module}:anything", search_path=[search_dir])


def test_undecorated_function_is_a_definition_error() -> None:
    with pytest.raises(CheckDefinitionError, match="not decorated with @check"):
        load_ref("checks.builtin.disk:probe_write")
