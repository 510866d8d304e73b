"""Through a real coordinator: GPUs given by id out of the free ones offered, whole-node
jobs, the pilots' slot policies and the wider-job signal."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import RunningCoordinator
from tests.coordinator.matching_calls import match, register_pilot, submit_jobs

A100 = {
    "vendor": "nvidia",
    "model": "NVIDIA A100-SXM4-80GB",
    "memory_mb": 81920,
    "capability": "8.0",
}
T4 = {"vendor": "nvidia", "model": "Tesla T4", "memory_mb": 15360, "capability": "7.5"}
GPUS = [{"id": str(i), **model} for i, model in enumerate((A100, A100, T4, T4))]


def given(jobs: list[dict[str, Any]]) -> dict[int, list[str]]:
    return {job["job_id"]: job["gpus"] for job in jobs}


def test_gpu_jobs_get_the_gpus_they_need_and_no_gpu_twice(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    (big,) = submit_jobs(coord, vo, {"NumberOfGPUs": 2, "MinGPUCapability": "8.0"})
    (tagged,) = submit_jobs(coord, vo, {"Tags": ["GPU"]}, user="bob")
    (plain,) = submit_jobs(coord, vo, user="carol")
    (huge,) = submit_jobs(coord, vo, {"GPUMemoryMB": 100000}, user="dave")
    pilot = register_pilot(coord, vo, cores=8, tags=["GPU"])
    got = given(match(coord, pilot, n=8, cores_free=8, gpus_free=GPUS))
    assert got == {big: ["0", "1"], tagged: ["2"], plain: []}  # a T4: the A100s were taken
    assert huge not in got
    # The pilot now offers the one GPU left: a 2-GPU job does not fit it.
    (pair,) = submit_jobs(coord, vo, {"NumberOfGPUs": 2}, user="erin")
    assert match(coord, pilot, n=1, cores_free=5, gpus_free=GPUS[3:]) == []
    assert given(match(coord, pilot, n=1, cores_free=5, gpus_free=GPUS[2:])) == {pair: ["2", "3"]}


def test_a_pilot_not_counting_gpus_is_matched_on_its_gpu_tag(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    (job,) = submit_jobs(coord, vo, {"Tags": ["GPU"]})
    untagged = register_pilot(coord, vo)
    assert match(coord, untagged, n=1, cores_free=1) == []  # an older pilot, no GPU tag
    tagged = register_pilot(coord, vo, tags=["GPU"])
    assert given(match(coord, tagged, n=1, cores_free=1)) == {job: []}


def test_whole_node_jobs_need_an_empty_node_and_take_it_all(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    (whole,) = submit_jobs(coord, vo, {"WholeNode": "yes"})
    pilot = register_pilot(coord, vo, cores=8)
    assert match(coord, pilot, n=1, cores_free=7) == []
    [job] = match(coord, pilot, n=1, cores_free=8)
    assert (job["job_id"], job["cores"], job["whole_node"]) == (whole, 8, True)


def test_slot_policies(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    narrow = submit_jobs(coord, vo, copies=4)
    (pair,) = submit_jobs(coord, vo, {"NumberOfProcessors": 2}, user="bob")
    (whole,) = submit_jobs(coord, vo, {"WholeNode": True}, user="carol")
    pilot = register_pilot(coord, vo, cores=4)
    # DIRAC's order: the whole-node job first on an empty node...
    [first] = match(coord, pilot, n=4, cores_free=4, slot_policy="whole_node_first")
    assert first["job_id"] == whole
    # ...then what takes exactly the free cores, multi-core before single-core.
    [second] = match(coord, pilot, n=4, cores_free=2, slot_policy="whole_node_first")
    assert second["job_id"] == pair
    smallest = match(coord, pilot, n=4, cores_free=2, slot_policy="smallest_first")
    assert [job["job_id"] for job in smallest] == narrow[:2]


def test_a_busy_pilot_hears_of_a_wider_job_and_can_ask_for_it_alone(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    import requests

    coord = shared_coordinator
    narrow = submit_jobs(coord, vo, copies=3)
    (wide,) = submit_jobs(coord, vo, {"NumberOfProcessors": 4}, user="bob")
    pilot_id, token = register_pilot(coord, vo, cores=4, memory_mb=8000)

    def ask(**request: Any) -> dict[str, Any]:
        reply = requests.post(
            coord.api(f"/pilots/{pilot_id}/match"), json=request, headers=coord.headers(token)
        )
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    busy = ask(n=1, cores_free=1, slot_policy="smallest_first")
    assert [job["job_id"] for job in busy["jobs"]] == narrow[:1]
    assert busy["wider_job_cores"] == 4
    # Holding for it: with every core free it asks for jobs of at least 4 cores.
    held = ask(n=4, cores_free=4, min_cores=4, slot_policy="smallest_first")
    assert [job["job_id"] for job in held["jobs"]] == [wide]
    assert held["wider_job_cores"] == 0


def test_cpu_efficiency_counts_the_cores_the_job_held(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    """A 1-4 core job given 4 cores, 6 s of CPU in 2 s of payload: 75 %, not 300 %."""
    import requests

    from tests.coordinator.matching_calls import report

    coord = shared_coordinator
    user = f"effie-{vo}"
    (job_id,) = submit_jobs(
        coord, vo, {"MinNumberOfProcessors": 1, "MaxNumberOfProcessors": 4}, user=user
    )
    pilot_id, token = pilot = register_pilot(coord, vo, cores=4)
    [job] = match(coord, pilot, n=1, cores_free=4)
    assert (job["job_id"], job["cores"]) == (job_id, 4)
    report(coord, pilot, job_id, "Running")
    final = {"status": "Done", "cpu_s": 6.0, "timings_s": {"payload": 2.0}, "cores": 4}
    reply = requests.post(
        coord.api(f"/jobs/{job_id}/status"),
        json=final,
        headers={**coord.headers(token), "X-Gridpilot-Pilot": pilot_id},
    )
    assert reply.status_code == 200, reply.text
    headers = coord.headers(coord.token(subject=user, vo=vo))
    info = requests.get(coord.api(f"/jobs/{job_id}"), headers=headers).json()
    assert (info["cores"], info["cpu_efficiency"]) == (4, 0.75)
    rows = requests.get(
        coord.api("/accounting/cpu-efficiency"), params={"by": "owner"}, headers=headers
    ).json()["rows"]
    [mine] = [row for row in rows if row["key"] == user]
    assert (mine["jobs"], mine["wall_core_s"], mine["efficiency_percent"]) == (1, 8.0, 75.0)


GPU_YAML = """
Executable: /bin/echo
NumberOfGPUs: 2
MinGPUCapability: 8.0
GPUMemoryMB: 40000
GPUModel: [A100]
"""
"""As a user writes it: the capability unquoted (YAML reads a number)."""


def test_gpu_requirements_in_yaml_and_json_descriptions_are_matched(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    """The same GPU job submitted as YAML and as JSON: neither goes to a node of T4s (7.5,
    15 GB); a node with two A100s and two T4s takes one of them, on the A100s."""
    import requests
    import yaml

    coord = shared_coordinator
    headers = coord.headers(coord.token(subject="alice", vo=vo))
    as_json = json.dumps(yaml.safe_load(GPU_YAML))
    assert '"MinGPUCapability": 8.0' in as_json  # a JSON number too
    submitted = []
    for text, fmt in ((GPU_YAML, "yaml"), (as_json, "json")):
        body = {"description": text, "format": fmt}
        reply = requests.post(coord.api("/jobs"), json=body, headers=headers, timeout=60)
        assert reply.status_code == 201, reply.text
        submitted += reply.json()["job_ids"]
    pilot = register_pilot(coord, vo, cores=4, tags=["GPU"])
    t4s = [{"id": str(i), **T4} for i in range(4)]
    assert match(coord, pilot, n=2, cores_free=4, gpus_free=t4s) == []
    got = given(match(coord, pilot, n=2, cores_free=4, gpus_free=GPUS))
    assert list(got.values()) == [["0", "1"]] and set(got) < set(submitted)
    rest = given(match(coord, pilot, n=2, cores_free=4, gpus_free=GPUS))  # as once that job ended
    assert set(rest) == set(submitted) - set(got) and list(rest.values()) == [["0", "1"]]
