"""Why a job waits and why a pilot got nothing: the pure rules on nodes of known facts,
then a real coordinator with pilots of known facts (registered and asking over HTTP)."""

from __future__ import annotations

from typing import Any

import requests

from coordinator.logic.explain import (
    JobFacts,
    PilotFacts,
    QueuePlace,
    explain_job,
    explain_pilot,
    fair_share_standing,
)
from coordinator.logic.matching import Offer, Requirements
from protocol import GpuInfo, JobStatus
from tests.conftest import RunningCoordinator
from tests.coordinator.matching_calls import Pilot, match, register_pilot, submit_jobs

T4 = [{"id": str(i), "vendor": "nvidia", "model": "Tesla T4", "memory_mb": 15360,
       "capability": "7.5"} for i in (0, 1)]  # fmt: skip
A100 = [{"id": str(i), "vendor": "nvidia", "model": "NVIDIA A100-SXM4-80GB",
         "memory_mb": 81920, "capability": "8.0"} for i in (0, 1)]  # fmt: skip


def node(**values: Any) -> Offer:
    defaults: dict[str, Any] = {"vo": "vo1", "cores_free": 4, "cores_total": 4, "gpus": ()}
    return Offer(**{**defaults, **values})


def counts(explanation: Any) -> dict[str, int]:
    return {check.name: check.pilots_meeting for check in explanation.requirements}


def test_one_requirement_alone_excluding_every_pilot_is_named() -> None:
    nodes = [node(site="A"), node(site="B", cores_free=16, cores_total=16), node(site="B")]
    job = JobFacts(7, JobStatus.WAITING, Requirements(vo="vo1", cores=32, max_cores=32))
    explanation = explain_job(job, nodes, 600, "2026-01-01T00:00:00+00:00")
    assert explanation.excluded_by == ["cores"]
    assert counts(explanation)["cores"] == 0 and counts(explanation)["site"] == 3
    assert (
        explanation.summary
        == "none of the 3 pilot(s) seen in the last 10 minutes meets: cores (32)"
    )
    assert explanation.pilots_meeting_all == 0


def test_requirements_met_apart_but_never_together() -> None:
    gpus = tuple(GpuInfo.from_dict(g) for g in A100)
    nodes = [node(site="A"), node(site="B", gpus=gpus)]
    needs = Requirements(vo="vo1", sites=frozenset({"A"}), gpus=1, gpu_capability="8.0")
    explanation = explain_job(JobFacts(7, JobStatus.WAITING, needs), nodes, 600, "")
    assert counts(explanation)["site"] == 1 and counts(explanation)["gpus"] == 1
    assert explanation.excluded_by == []
    assert explanation.summary.endswith("but no pilot meets them all together")
    wanted = {check.name: check.wanted for check in explanation.requirements}
    assert wanted["gpus"] == "1 GPU(s), capability >= 8.0" and wanted["site"] == "A"


def test_a_job_that_fits_waits_for_its_turn_and_no_pilot_is_no_pilot() -> None:
    share = fair_share_standing("alice", "prod", ["alice", "bob", "carol"], {"alice": 8.0}, {})
    assert (share.position, share.owners, share.usage) == (3, 3, 8.0)
    job = JobFacts(7, JobStatus.WAITING, Requirements(vo="vo1"), QueuePlace(3, 2, 5), share)
    explanation = explain_job(job, [node(), node()], 600, "")
    assert explanation.summary == (
        "2 of 2 pilot(s) seen could run it: it waits for its turn; number 2 of 5 in its "
        "task queue; its owner is 3 of 3 by fair share"
    )
    alone = explain_job(job, [], 300, "")
    assert alone.summary == "no pilot of VO vo1 has asked for work in the last 5 minutes"
    assert alone.pilots_seen == 0 and alone.excluded_by == []
    running = explain_job(JobFacts(7, JobStatus.RUNNING, Requirements(vo="vo1")), [], 600, "")
    assert running.summary == "the job is Running, not waiting for a pilot"


def test_pilot_explanations_by_cause() -> None:
    queues = [
        (1, "alice", Requirements(vo="vo1", cores=4, max_cores=4)),
        (2, "bob", Requirements(vo="vo1", cores=2, max_cores=2, platform="aarch64-el9")),
    ]
    offer = node(cores_free=1, platform="x86_64-el9")
    missed = explain_pilot(PilotFacts("p", True, offer=offer), queues)
    assert missed.cause == "no_queue_fits"
    assert [(m.task_queue_id, m.failed) for m in missed.nearest] == [
        (1, ["cores"]),
        (2, ["platform", "cores"]),
    ]
    assert missed.nearest[0].details == ["cores: needs 4, 1 free"]
    assert missed.summary.startswith("no task queue with waiting jobs fits its last request")
    stopped = PilotFacts("p", False, "black_hole", "black-hole guard: 5 jobs failed", offer=offer)
    assert explain_pilot(stopped, queues).cause == "black_hole"
    assert explain_pilot(PilotFacts("p", True), queues).cause == "never_asked"
    assert explain_pilot(PilotFacts("p", True, offer=offer), []).cause == "no_waiting_jobs"
    wide = node(cores_free=8, cores_total=8)
    assert explain_pilot(PilotFacts("p", True, offer=wide), queues).cause == "fits_now"


# --- against a real coordinator -------------------------------------------------------------


def explain(coord: RunningCoordinator, vo: str, job_id: int, user: str = "alice") -> Any:
    token = coord.token(subject=user, vo=vo)
    reply = requests.get(coord.api(f"/jobs/{job_id}/explain"), headers=coord.headers(token))
    assert reply.status_code == 200, reply.text
    return reply.json()


def why(coord: RunningCoordinator, vo: str, pilot: Pilot) -> Any:
    token = coord.token(subject="alice", vo=vo)
    reply = requests.get(coord.api(f"/pilots/{pilot[0]}/explain"), headers=coord.headers(token))
    assert reply.status_code == 200, reply.text
    return reply.json()


def pilot_with(
    coord: RunningCoordinator, vo: str, site: str, cores: int, gpus: list[Any], **more: Any
) -> Pilot:
    """A pilot of known facts that asks once (with a 0-core request: it takes nothing)."""
    facts = {"gpus": gpus, "db12_score": more.pop("score", 10.0)}
    pilot = register_pilot(
        coord, vo, site=site, cores=cores, memory_mb=4000 * cores, platform="x86_64-el9",
        tags=["GPU"] if gpus else [], facts=facts,
    )  # fmt: skip
    match(coord, pilot, n=1, cores_free=0, gpus_free=gpus, time_left_s=more.get("left", 86400))
    return pilot


def test_explain_against_pilots_of_known_facts(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    pilot_with(coord, vo, "SITE.A", 4, T4, score=20.0)
    pilot_with(coord, vo, "SITE.B", 16, A100)
    pilot_with(coord, vo, "SITE.B", 1, [], left=600)
    pilot_with(coord, vo, "SITE.A", 8, [])
    [wide] = submit_jobs(coord, vo, {"NumberOfProcessors": 32})
    found = explain(coord, vo, wide)
    assert found["status"] == "Waiting" and found["pilots_seen"] == 4
    assert found["excluded_by"] == ["cores"]
    assert {c["name"]: c["pilots_meeting"] for c in found["requirements"]}["cores"] == 0
    [split] = submit_jobs(coord, vo, {"Site": "SITE.A", "MinGPUCapability": "8.0"})
    apart = explain(coord, vo, split)
    meeting = {c["name"]: c["pilots_meeting"] for c in apart["requirements"]}
    assert (meeting["site"], meeting["gpus"], apart["pilots_meeting_all"]) == (2, 1, 0)
    [gpu_job] = submit_jobs(coord, vo, {"NumberOfGPUs": 2, "GPUMemoryMB": 16000})
    assert {c["name"]: c["pilots_meeting"] for c in explain(coord, vo, gpu_job)["requirements"]}[
        "gpus"
    ] == 1  # only the A100s have 16000 MiB
    [long_job] = submit_jobs(coord, vo, {"CPUTime": 3600, "MinCPUScore": 15})
    long_counts = {
        c["name"]: c["pilots_meeting"] for c in explain(coord, vo, long_job)["requirements"]
    }
    assert (long_counts["cpu_time"], long_counts["cpu_score"]) == (3, 1)
    # Three alike jobs of bob share a queue: the third is third in it.
    bobs = submit_jobs(coord, vo, {"Priority": 3}, user="bob", copies=3)
    third = explain(coord, vo, bobs[2], user="bob")
    assert (third["queue_position"], third["queue_waiting"]) == (3, 3)
    assert third["fair_share"]["owner"] == "bob" and third["fair_share"]["owners"] == 2
    assert third["summary"].startswith("4 of 4 pilot(s) seen could run it: it waits for its turn")


def test_a_vo_without_pilots_and_a_job_given_out(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    [lonely] = submit_jobs(coord, vo)
    found = explain(coord, vo, lonely)
    assert found["summary"] == f"no pilot of VO {vo} has asked for work in the last 10 minutes"
    assert found["last_pilot_at"] == ""
    pilot = register_pilot(coord, vo, cores=2)
    [given] = match(coord, pilot, n=1, cores_free=2)
    assert explain(coord, vo, given["job_id"])["summary"] == (
        "the job is Matched, not waiting for a pilot"
    )


def test_why_a_pilot_got_nothing(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    pilot = register_pilot(coord, vo, cores=4, platform="x86_64-el9")
    assert why(coord, vo, pilot)["cause"] == "never_asked"
    assert match(coord, pilot, n=1, cores_free=4) == []
    assert why(coord, vo, pilot)["cause"] == "no_waiting_jobs"
    submit_jobs(coord, vo, {"NumberOfProcessors": 4})
    submit_jobs(coord, vo, {"NumberOfProcessors": 2, "Platform": "aarch64-el9"}, user="bob")
    assert match(coord, pilot, n=1, cores_free=1) == []
    found = why(coord, vo, pilot)
    assert found["cause"] == "no_queue_fits" and found["queues"] == 2
    assert [miss["failed"] for miss in found["nearest"]] == [["cores"], ["platform", "cores"]]
    assert found["nearest"][0]["details"] == ["cores: needs 4, 1 free"]
    assert found["last_match_jobs"] == 0 and found["last_match_at"]
    [given] = match(coord, pilot, n=1, cores_free=4)
    assert why(coord, vo, pilot)["cause"] == "matched"
    pilot_id, token = pilot
    state = {"accepting_work": False, "reason": "black-hole guard: 5 jobs in a row failed",
             "cause": "black_hole"}  # fmt: skip
    reply = requests.post(
        coord.api(f"/pilots/{pilot_id}/state"), json=state, headers=coord.headers(token)
    )
    assert reply.status_code == 204, reply.text
    stopped = why(coord, vo, pilot)
    assert stopped["cause"] == "black_hole" and "black-hole guard" in stopped["summary"]
    assert given["cores"] == 4
