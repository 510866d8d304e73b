"""A payload's output tree is walked iteratively, within limits (issue 12, item 10).

A 1,200-level tree with ``OutputSandbox = {"**/x"}`` used to crash the wrapper with a
RecursionError ("Job wrapper crashed", rescheduled as an infrastructure failure). Now the
pattern is refused, the job fails as the payload's fault with a clear minor status, and
the other output files still arrive.
"""

from __future__ import annotations

import dataclasses
import functools
import subprocess
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import JobStatus
from tests.wrapper.conftest import DirectoryTransport, assignment
from wrapper.job import JobOutcome, JobRun, WrapperConfig
from wrapper.patterns import _matches
from wrapper.sandbox import SandboxLimits, unpack

CONFIG = WrapperConfig(kill_grace_s=0.5, upload_backoff_s=0.01)
DEEP_TREE = "i=0; while [ $i -lt 1200 ]; do mkdir d; cd d; i=$((i+1)); done; echo deep > x"


def run(
    tmp_path: Path, transport: DirectoryTransport, script: str, outputs: list[str], **config: object
) -> JobOutcome:
    wrapper_config = dataclasses.replace(CONFIG, **config)  # type: ignore[arg-type]
    job = assignment(
        executable="/bin/sh",
        arguments=["-c", f"echo started; {script}"],
        stdout="std.out",
        output_sandbox=["std.out", *outputs],
    )
    return JobRun(job, tmp_path / "pilot" / "job_7", transport, wrapper_config).run()


def output_names(transport: DirectoryTransport, outcome: JobOutcome, tmp_path: Path) -> list[str]:
    dest = tmp_path / "fetched"
    return sorted(unpack(transport.path_of(outcome.output_sandbox), dest))


@pytest.fixture(autouse=True)
def _deep_trees_removed(tmp_path: Path) -> Iterator[None]:
    """pytest's clean-up of old temporary dirs recurses into the payloads' 1,200-level
    trees (a RecursionError that fails a later pytest run, e.g. CI's PostgreSQL pass);
    rm does not."""
    yield
    subprocess.run(["rm", "-rf", str(tmp_path / "pilot")], check=True, timeout=120)


def test_deep_tree_under_a_glob_fails_the_job_not_the_wrapper(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    outcome = run(tmp_path, transport, DEEP_TREE, ["**/x"])
    assert outcome.status == JobStatus.FAILED
    assert outcome.minor_status == (
        "Output Sandbox Not Collected: the work dir holds a tree deeper than 256 directory "
        "levels for pattern **/x"
    )
    assert not outcome.infrastructure_error  # the payload's doing: not rescheduled
    assert outcome.exit_code == 0
    assert output_names(transport, outcome, tmp_path) == ["std.out"]  # the rest still came


def test_patterns_walk_only_below_their_literal_part(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    script = f"{DEEP_TREE}; cd /; cd $HOME; mkdir out; echo r > out/a.txt; echo s > result"
    outcome = run(tmp_path, transport, script, ["result", "out/*.txt"])
    assert outcome.status == JobStatus.DONE, outcome.minor_status
    assert output_names(transport, outcome, tmp_path) == ["out/a.txt", "result", "std.out"]


def test_too_many_entries_to_walk_is_refused_the_same_way(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    script = "mkdir many; cd many; i=0; while [ $i -lt 60 ]; do touch f$i; i=$((i+1)); done"
    limits = SandboxLimits(max_scan_entries=50)
    outcome = run(tmp_path, transport, script, ["many/*"], sandbox_limits=limits)
    assert outcome.minor_status == (
        "Output Sandbox Not Collected: the work dir holds more than 50 entries to walk "
        "for pattern many/*"
    )
    assert not outcome.infrastructure_error
    fine = run(tmp_path, transport, "echo ok > one", ["one"], sandbox_limits=limits)
    assert fine.status == JobStatus.DONE


def reference_match(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    """The recursive definition the iterative matcher must agree with (small inputs)."""

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(path)
        if pattern[i] == "**":
            return match(i + 1, j) or (j < len(path) and match(i, j + 1))
        return j < len(path) and fnmatchcase(path[j], pattern[i]) and match(i + 1, j + 1)

    return match(0, 0)


segments = st.sampled_from(["a", "b", "ab", "x.log"])
pattern_parts = st.sampled_from(["a", "b", "*", "a*", "*.log", "**", "?"])


@given(st.lists(pattern_parts, max_size=5), st.lists(segments, max_size=7))
def test_iterative_glob_agrees_with_the_recursive_definition(
    pattern: list[str], path: list[str]
) -> None:
    assert _matches(tuple(pattern), tuple(path)) == reference_match(tuple(pattern), tuple(path))


def test_glob_matching_a_very_deep_path_does_not_recurse() -> None:
    deep = ("d",) * 5000 + ("x",)
    assert _matches(("**", "x"), deep)
    assert not _matches(("**", "y"), deep)
