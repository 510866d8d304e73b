"""Fair share between owners of a VO, and priority within one owner."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.logic.fairshare import (
    FairShareConfigError,
    decayed,
    next_owner,
    parse_weights,
)
from coordinator.settings import Settings, SettingsError
from tests.conftest import REPO_ROOT, RunningCoordinator, launch_coordinator
from tests.coordinator.matching_calls import match, register_pilot, submit_jobs

OWNERS = ["alice", "bob", "carol", "dave"]


@given(
    weights=st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=4),
    steps=st.integers(min_value=1, max_value=400),
)
def test_owners_get_work_in_proportion_to_their_weights(weights: list[int], steps: int) -> None:
    named = dict(zip(OWNERS, (float(w) for w in weights)))
    usage: dict[str, float] = {}
    for _ in range(steps):
        owner = next_owner(named, usage, named)
        usage[owner] = usage.get(owner, 0.0) + 1
    total_weight = sum(named.values())
    for owner, weight in named.items():
        assert abs(usage.get(owner, 0.0) - steps * weight / total_weight) <= len(named)


def test_weight_zero_gets_work_only_alone() -> None:
    weights = {"idle": 0.0}
    assert next_owner(["idle", "busy"], {"busy": 1000.0}, weights) == "busy"
    assert next_owner(["idle"], {"busy": 1000.0}, weights) == "idle"


def test_usage_halves_every_half_life() -> None:
    assert decayed(8.0, 0.0, 60.0) == 8.0
    assert decayed(8.0, 120.0, 60.0) == pytest.approx(2.0)
    assert decayed(8.0, -5.0, 60.0) == 8.0  # a clock step backwards never inflates usage


@pytest.mark.parametrize(
    "text",
    ["vo1: [alice]", "vo1: {alice: -1}", "vo1: {alice: two}", "[1, 2]", "vo1: {a: .inf}", "{"],
)
def test_bad_weights_are_refused(text: str) -> None:
    with pytest.raises(FairShareConfigError):
        parse_weights(text)


def test_weights_from_yaml_or_json() -> None:
    expected = {"vo1": {"alice": 2.0, "bob": 1.0}}
    assert parse_weights("vo1:\n  alice: 2\n  bob: 1\n") == expected
    assert parse_weights(json.dumps(expected)) == expected
    assert parse_weights("") == {}


def weights_file(tmp_path: Path, vo: str, **weights: float) -> Path:
    path = tmp_path / "fair-share.yaml"
    path.write_text(json.dumps({vo: weights}))
    return path


def matched_owners(coord: RunningCoordinator, vo: str, calls: int, n: int) -> list[dict[str, Any]]:
    """Descriptions of the jobs matched by ``calls`` match calls of ``n`` jobs each."""
    pilot = register_pilot(coord, vo)
    got: list[dict[str, Any]] = []
    for _ in range(calls):
        got += [job["description"] for job in match(coord, pilot, n=n, cores_free=n)]
    return got


def test_two_owners_weighted_2_to_1_share_matches_2_to_1(
    start_coordinator: Callable[..., RunningCoordinator], tmp_path: Path
) -> None:
    coord = start_coordinator(fair_share=weights_file(tmp_path, "vo1", alice=2, bob=1))
    submit_jobs(coord, "vo1", user="bob", copies=300)  # bob's are older: FIFO would favour him
    for priority in (1, 5, 3):
        submit_jobs(coord, "vo1", {"Priority": priority}, user="alice", copies=100)
    matched = matched_owners(coord, "vo1", calls=20, n=15)
    split = collections.Counter(job["Owner"] for job in matched)
    assert len(matched) == 300
    assert split["alice"] == pytest.approx(200, abs=6)
    assert split["bob"] == pytest.approx(100, abs=6)
    # Within alice's jobs: highest priority first, oldest first at equal priority.
    alice = [(int(job["Priority"]), job) for job in matched if job["Owner"] == "alice"]
    priorities = [priority for priority, _job in alice]
    assert priorities == sorted(priorities, reverse=True)
    assert priorities[0] == 5 and 3 in priorities


def test_owners_without_a_weight_count_as_one(
    start_coordinator: Callable[..., RunningCoordinator], tmp_path: Path
) -> None:
    coord = start_coordinator(fair_share=weights_file(tmp_path, "vo1", alice=3))
    for user in ("alice", "carol"):
        submit_jobs(coord, "vo1", user=user, copies=100)
    split = collections.Counter(job["Owner"] for job in matched_owners(coord, "vo1", 8, 10))
    assert split == {"alice": 60, "carol": 20}


def test_an_owner_alone_gets_everything_whatever_the_weights(
    start_coordinator: Callable[..., RunningCoordinator], tmp_path: Path
) -> None:
    coord = start_coordinator(fair_share=weights_file(tmp_path, "vo1", alice=0, bob=5))
    submit_jobs(coord, "vo1", user="alice", copies=30)
    assert len(matched_owners(coord, "vo1", 3, 10)) == 30


@pytest.mark.slow
def test_usage_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "coordinator"
    first = launch_coordinator(data_dir)
    try:
        submit_jobs(first, "vo1", user="alice", copies=20)
        assert len(matched_owners(first, "vo1", 2, 10)) == 20
    finally:
        stop(first)
    again = launch_coordinator(data_dir)
    try:
        submit_jobs(again, "vo1", user="alice", copies=10)
        submit_jobs(again, "vo1", user="bob", copies=10)
        owners = [job["Owner"] for job in matched_owners(again, "vo1", 1, 12)]
    finally:
        stop(again)
    # alice was given 20 cores before the restart: bob's 10 jobs come first.
    assert owners[:10] == ["bob"] * 10


def stop(coord: RunningCoordinator) -> None:
    coord.process.terminate()
    coord.process.wait(timeout=30)
    assert "Traceback" not in coord.log(), coord.log()


def test_serve_refuses_a_bad_weights_file(tmp_path: Path) -> None:
    bad = tmp_path / "weights.yaml"
    bad.write_text("vo1: {alice: -2}\n")
    serve = [sys.executable, "-m", "coordinator", "serve", "--data-dir", str(tmp_path / "d")]
    done = subprocess.run(
        [*serve, "--fair-share", str(bad)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "weight -2 must be a finite number >= 0" in done.stderr


def test_weights_from_the_environment(tmp_path: Path) -> None:
    environ = {"GRIDPILOT_FAIR_SHARE_WEIGHTS": '{"vo1": {"alice": 2}}'}
    settings = Settings.from_env(tmp_path, environ=environ)
    assert settings.fair_share_weights == {"vo1": {"alice": 2.0}}
    with pytest.raises(FairShareConfigError):
        Settings.from_env(tmp_path, environ={"GRIDPILOT_FAIR_SHARE_WEIGHTS": '{"vo1": 3}'})
    with pytest.raises(SettingsError):
        Settings.from_env(tmp_path, environ={"GRIDPILOT_METRICS_ACCESS": "everyone"})
