"""How a multi-slot pilot shares its node: GPUs and CPUs per job, what it offers, when it
holds cores for a wide job (pure parts, with known facts and clock values)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilot.config import load_config
from pilot.errors import ConfigError
from pilot.registration import match_request
from pilot.slots import NodeCapacity, RunningJob, Slots, capacity_from_checks
from pilot.widejobs import WideJobHold
from protocol import CheckReport, CheckStatus, JobAssignment, PilotRegistration
from wrapper.job import JobRun, WrapperConfig

GPU_FACTS = [
    {"id": "0", "vendor": "nvidia", "model": "NVIDIA A100-SXM4-80GB", "memory_mb": 81920,
     "capability": "8.0", "devices": ["/dev/nvidia0", "/dev/nvidiactl"], "uuid": "GPU-a"},
    {"id": "1", "vendor": "nvidia", "model": "NVIDIA A100-SXM4-80GB", "memory_mb": 81920,
     "capability": "8.0", "devices": ["/dev/nvidia1", "/dev/nvidiactl"]},
    {"id": "2", "vendor": "nvidia", "model": "Tesla T4", "memory_mb": 15360,
     "capability": "7.5", "devices": ["/dev/nvidia3", "/dev/nvidiactl"]},
    {"id": "3", "vendor": "nvidia", "model": "Tesla T4", "memory_mb": 15360,
     "capability": "7.5", "devices": ["/dev/nvidia2", "/dev/nvidiactl"]},
]  # fmt: skip
REGISTRATION = PilotRegistration(hostname="wn1", pilot_version="t", site="S", tags=["GPU"])


def reports(**facts: object) -> list[CheckReport]:
    return [CheckReport("node", CheckStatus.OK, "", dict(facts))]


def running(slots: Slots, tmp_path: Path, job: JobAssignment) -> None:
    allocation = slots.allocate(job)
    run = JobRun(job, tmp_path / f"job_{job.job_id}", None, WrapperConfig())  # type: ignore[arg-type]
    slots.add(RunningJob(job, run, 0.0, 0.0, 0.0, allocation=allocation))


def test_gpus_and_cpus_are_split_among_the_jobs(tmp_path: Path) -> None:
    capacity = capacity_from_checks(
        reports(cores=8, memory_mb=64000, gpus=GPU_FACTS), cpus=range(16)
    )
    assert capacity.cpus == tuple(range(8))  # the first 8 of the pilot's CPUs
    slots = Slots(capacity)
    request = match_request(REGISTRATION, slots.free(), 3600, slot_policy="smallest_first")
    assert [gpu.id for gpu in request.gpus_free or []] == ["0", "1", "2", "3"]
    assert request.gpus_free and request.gpus_free[2].model == "Tesla T4"
    assert request.slot_policy == "smallest_first"
    running(slots, tmp_path, JobAssignment(job_id=1, executable="x", cores=2, gpus=["2"]))
    running(slots, tmp_path, JobAssignment(job_id=2, executable="x", cores=4, gpus=["0", "1"]))
    first, second = (job.allocation for job in slots.jobs())
    assert first.cpus == (0, 1) and [g.id for g in first.gpus] == ["2"]
    assert first.gpus[0].devices == ("/dev/nvidia3", "/dev/nvidiactl")
    assert second.cpus == (2, 3, 4, 5) and [g.id for g in second.gpus] == ["0", "1"]
    free = slots.free()
    assert (free.cores, free.cpus) == (2, (6, 7))
    assert [gpu.info.id for gpu in free.gpus or ()] == ["3"]
    again = match_request(REGISTRATION, free, 3600)
    assert [gpu.id for gpu in again.gpus_free or []] == ["3"]
    # A GPU the coordinator named that is not free here is not given twice.
    stray = slots.allocate(JobAssignment(job_id=3, executable="x", cores=1, gpus=["0", "3"]))
    assert [g.id for g in stray.gpus] == ["3"]


def test_a_pilot_without_the_gpu_check_does_not_count_gpus() -> None:
    capacity = capacity_from_checks(reports(cores=4))
    assert capacity.gpus is None and capacity.cpus == ()
    assert match_request(REGISTRATION, capacity, None).gpus_free is None
    none_found = capacity_from_checks(reports(cores=4, gpus=[]))
    assert match_request(REGISTRATION, none_found, None).gpus_free == []
    # Fewer CPUs than cores to fill (a configured figure above the affinity): no pinning.
    assert capacity_from_checks(reports(cores=4), cpus=[0, 1]).cpus == ()


def test_wide_job_hold_waits_its_patience_then_frees_cores() -> None:
    hold = WideJobHold(patience_s=60.0)
    hold.heard(8, now=100.0)
    assert not hold.holding(free_cores=2, now=159.0) and hold.min_cores(159.0) == 0
    hold.heard(8, now=159.0)  # still waiting, still 8 cores
    assert hold.holding(free_cores=2, now=160.0)
    assert not hold.holding(free_cores=8, now=160.0)  # enough free: ask, for 8 at least
    assert hold.min_cores(160.0) == 8
    hold.answered(8, got_jobs=True, now=161.0)
    assert not hold.due(161.0) and hold.min_cores(161.0) == 0
    hold.heard(8, now=170.0)  # another one: its own patience
    assert not hold.due(200.0) and hold.due(230.0)
    hold.heard(0, now=231.0)  # taken by someone else: back to normal
    assert not hold.due(400.0)
    never = WideJobHold(patience_s=0.0)
    never.heard(8, now=0.0)
    assert not never.holding(1, now=1e9)


def test_slot_policy_and_patience_are_checked(tmp_path: Path) -> None:
    base = {"url": "http://x", "token": "t", "workdir": tmp_path}
    assert load_config(base, {}).slot_policy == "whole_node_first"
    assert load_config({**base, "slot_policy": "any"}, {}).slot_policy == "any"
    env = {"GRIDPILOT_SLOT_POLICY": "smallest_first", "GRIDPILOT_WIDE_JOB_PATIENCE_S": "30"}
    config = load_config(base, env)
    assert (config.slot_policy, config.wide_job_patience_s) == ("smallest_first", 30.0)
    with pytest.raises(ConfigError, match="slot_policy 'biggest' is not one of"):
        load_config({**base, "slot_policy": "biggest"}, {})
    assert (
        match_request(REGISTRATION, NodeCapacity(2, 0), None, slot_policy="any").slot_policy == ""
    )
