"""Pilot endpoints against a real coordinator: register, match, report, heartbeat."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import requests

from protocol import PROTOCOL_HEADER
from tests.conftest import RunningCoordinator

HELLO = {"Executable": "/bin/echo", "Arguments": "hello"}


class PilotSession:
    """What a pilot does over HTTP, written out plainly for the tests."""

    def __init__(self, coord: RunningCoordinator, vo: str, subject: str = "pilot", **reg: Any):
        self.coord = coord
        self.token = coord.token(role="pilot", subject=subject, vo=vo)
        body = {"hostname": "wn01", "pilot_version": "0.1.0", **reg}
        reply = requests.post(coord.api("/pilots"), json=body, headers=self.headers())
        assert reply.status_code == 201, reply.text
        self.pilot_id: str = reply.json()["pilot_id"]

    def headers(self) -> dict[str, str]:
        return self.coord.headers(self.token)

    def match(self, **request: Any) -> dict[str, Any]:
        reply = requests.post(
            self.coord.api(f"/pilots/{self.pilot_id}/match"), json=request, headers=self.headers()
        )
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    def report(self, job_id: int, status: str, **update: Any) -> requests.Response:
        return requests.post(
            self.coord.api(f"/jobs/{job_id}/status"),
            json={"status": status, **update},
            headers={**self.headers(), "X-Gridpilot-Pilot": self.pilot_id},
        )

    def heartbeat(self, job_id: int) -> requests.Response:
        return requests.post(
            self.coord.api(f"/jobs/{job_id}/heartbeat"),
            json={"cpu_s": 1.5},
            headers={**self.headers(), "X-Gridpilot-Pilot": self.pilot_id},
        )


def submit(coord: RunningCoordinator, vo: str, description: Any = None, user: str = "alice") -> int:
    token = coord.token(subject=user, vo=vo)
    body = {"description": json.dumps(description or HELLO), "format": "json"}
    reply = requests.post(coord.api("/jobs"), json=body, headers=coord.headers(token))
    assert reply.status_code == 201, reply.text
    job_id: int = reply.json()["job_ids"][0]
    return job_id


def job(coord: RunningCoordinator, vo: str, job_id: int, user: str = "alice") -> dict[str, Any]:
    token = coord.token(subject=user, vo=vo)
    info: dict[str, Any] = requests.get(
        coord.api(f"/jobs/{job_id}"), headers=coord.headers(token)
    ).json()
    return info


def statuses(coord: RunningCoordinator, vo: str, job_id: int) -> list[str]:
    token = coord.token(vo=vo)
    reply = requests.get(coord.api(f"/jobs/{job_id}/history"), headers=coord.headers(token))
    return [entry["status"] for entry in reply.json()["history"]]


def test_job_runs_to_done_with_exit_code(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    job_id = submit(coord, vo, {**HELLO, "StdOutput": "out.txt", "OutputSandbox": ["out.txt"]})
    pilot = PilotSession(coord, vo, site="SITE.A")

    reply = pilot.match(cores_free=4, memory_free_mb=8000)
    assert reply["retry_after_s"] == 0
    [assignment] = reply["jobs"]
    assert assignment["job_id"] == job_id
    assert (assignment["executable"], assignment["arguments"]) == ("/bin/echo", ["hello"])
    assert assignment["stdout"] == "out.txt"
    assert assignment["output_sandbox"] == ["out.txt"]
    assert assignment["description"]["Owner"] == "alice"
    matched = job(coord, vo, job_id)
    assert (matched["status"], matched["pilot_id"], matched["site"]) == (
        "Matched",
        pilot.pilot_id,
        "SITE.A",
    )

    assert pilot.report(job_id, "Running", minor_status="Application").status_code == 200
    done = pilot.report(job_id, "Done", minor_status="Execution Complete", exit_code=0)
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["exit_code"]) == ("Done", 0)
    assert statuses(coord, vo, job_id)[-3:] == ["Matched", "Running", "Done"]


def test_no_work_gives_retry_after(shared_coordinator: RunningCoordinator, vo: str) -> None:
    reply = PilotSession(shared_coordinator, vo).match()
    assert reply["jobs"] == []
    assert reply["retry_after_s"] > 0


def test_invalid_transition_is_refused_and_changes_nothing(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    job_id = submit(coord, vo)
    pilot = PilotSession(coord, vo)
    pilot.match()
    pilot.report(job_id, "Running")
    pilot.report(job_id, "Done", exit_code=0)
    before = job(coord, vo, job_id)

    reply = pilot.report(job_id, "Running", minor_status="again", exit_code=3)
    assert reply.status_code == 409
    assert reply.json()["code"] == "invalid_transition"
    assert reply.json()["details"] == {"from": "Done", "to": "Running"}
    assert job(coord, vo, job_id) == before
    assert statuses(coord, vo, job_id)[-1] == "Done"


def test_kill_of_a_running_job_reaches_the_pilot(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    job_id = submit(coord, vo)
    pilot = PilotSession(coord, vo)
    pilot.match()
    pilot.report(job_id, "Running")
    assert pilot.heartbeat(job_id).json() == {"commands": []}

    token = coord.token(vo=vo)
    killed = requests.post(coord.api(f"/jobs/{job_id}/kill"), headers=coord.headers(token))
    assert killed.json()["status"] == "Running"  # the pilot has not acted yet

    commands = pilot.heartbeat(job_id).json()["commands"]
    assert [c["kind"] for c in commands] == ["kill"]
    assert pilot.report(job_id, "Killed", minor_status="Killed by owner").status_code == 200
    assert job(coord, vo, job_id)["status"] == "Killed"
    late = pilot.heartbeat(job_id)
    assert (late.status_code, late.json()["code"]) == (409, "lease_lost")


def test_pilots_of_another_vo_never_get_or_touch_the_jobs(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    job_ids = [submit(coord, vo) for _ in range(3)]
    stranger = PilotSession(coord, f"{vo}-other")
    assert stranger.match(n=10, cores_free=10)["jobs"] == []
    assert stranger.report(job_ids[0], "Running").status_code == 404
    assert stranger.heartbeat(job_ids[0]).status_code == 404

    own = PilotSession(coord, vo)
    assert sorted(j["job_id"] for j in own.match(n=10, cores_free=10)["jobs"]) == job_ids


def test_a_pilot_cannot_update_a_job_held_by_another(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    job_id = submit(coord, vo)
    holder, other = PilotSession(coord, vo), PilotSession(coord, vo)
    holder.match()
    reply = other.report(job_id, "Running")
    assert (reply.status_code, reply.json()["code"]) == (409, "lease_lost")
    assert job(coord, vo, job_id)["status"] == "Matched"


def test_a_pilot_id_is_usable_only_with_the_token_that_registered_it(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    submit(coord, vo)
    pilot = PilotSession(coord, vo, subject="factory-a")
    thief_token = coord.token(role="pilot", subject="factory-b", vo=vo)
    reply = requests.post(
        coord.api(f"/pilots/{pilot.pilot_id}/match"), json={}, headers=coord.headers(thief_token)
    )
    assert reply.status_code == 404


@pytest.mark.parametrize(
    ("requirements", "offer", "fits"),
    [
        ({"Site": "SITE.A"}, {"site": "SITE.B"}, False),
        ({"Site": ["SITE.A", "SITE.B"]}, {"site": "SITE.B"}, True),
        ({"BannedSites": ["SITE.B"]}, {"site": "SITE.B"}, False),
        ({"Platform": "x86_64-el9"}, {"platform": "aarch64-el9"}, False),
        ({"Platform": "x86_64-el9"}, {"platform": "x86_64-el9"}, True),
        ({"Tags": ["GPU"]}, {"tags": ["cvmfs"]}, False),
        ({"Tags": ["GPU"]}, {"tags": ["GPU", "cvmfs"]}, True),
        ({"NumberOfProcessors": 8}, {"cores_free": 4}, False),
        ({"MaxRAM": 4000}, {"memory_free_mb": 2000}, False),
        ({"WallTime": 7200}, {"time_left_s": 3600}, False),
        ({"CPUTime": 600}, {"time_left_s": 3600}, True),
        ({"Container": "/images/el9.sif"}, {}, False),
        ({"Container": "/images/el9.sif"}, {"container_runtimes": ["apptainer"]}, True),
    ],
)
def test_requirements_decide_the_match(
    shared_coordinator: RunningCoordinator,
    vo: str,
    requirements: dict[str, Any],
    offer: dict[str, Any],
    fits: bool,
) -> None:
    coord = shared_coordinator
    job_id = submit(coord, vo, {**HELLO, **requirements})
    matched = PilotSession(coord, vo).match(**offer)["jobs"]
    assert [j["job_id"] for j in matched] == ([job_id] if fits else [])


def test_higher_priority_first_and_cores_fill_up(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    low = submit(coord, vo, {**HELLO, "Priority": 1, "NumberOfProcessors": 2})
    high = submit(coord, vo, {**HELLO, "Priority": 9, "NumberOfProcessors": 2})
    third = submit(coord, vo, {**HELLO, "Priority": 1, "NumberOfProcessors": 2})
    matched = PilotSession(coord, vo).match(n=5, cores_free=4)["jobs"]
    assert [(j["job_id"], j["cores"]) for j in matched] == [(high, 2), (low, 2)]
    assert job(coord, vo, third)["status"] == "Waiting"


def test_concurrent_pilots_never_share_a_job(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    token = coord.token(vo=vo)
    description = {**HELLO, "Parameters": 500, "ParameterStart": 0, "ParameterStep": 1}
    body = {"description": json.dumps(description), "format": "json"}
    job_ids = requests.post(coord.api("/jobs"), json=body, headers=coord.headers(token)).json()[
        "job_ids"
    ]
    pilots = [PilotSession(coord, vo) for _ in range(8)]
    taken: list[list[int]] = [[] for _ in pilots]

    def work(index: int) -> None:
        with requests.Session() as session:
            while True:
                reply = session.post(
                    coord.api(f"/pilots/{pilots[index].pilot_id}/match"),
                    json={"n": 3, "cores_free": 3},
                    headers=pilots[index].headers(),
                ).json()
                if not reply["jobs"]:
                    return
                taken[index].extend(j["job_id"] for j in reply["jobs"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(pilots))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [job_id for share in taken for job_id in share]
    assert len(everything) == 500
    assert sorted(everything) == sorted(job_ids)
    assert sum(1 for share in taken if share) > 1


def test_users_cannot_call_pilot_endpoints(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    job_id = submit(coord, vo)
    headers = coord.headers(coord.token(vo=vo), **{"X-Gridpilot-Pilot": "x"})
    calls = [
        ("/pilots", {"hostname": "h", "pilot_version": "1"}),
        ("/pilots/x/match", {}),
        (f"/jobs/{job_id}/status", {"status": "Running"}),
        (f"/jobs/{job_id}/heartbeat", {}),
    ]
    for path, body in calls:
        reply = requests.post(coord.api(path), json=body, headers=headers)
        assert (reply.status_code, reply.json()["code"]) == (403, "forbidden"), path


def test_pilots_cannot_call_user_endpoints(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    job_id = submit(coord, vo)
    headers = PilotSession(coord, vo).headers()
    assert requests.get(coord.api(f"/jobs/{job_id}"), headers=headers).status_code == 403
    body = {"description": json.dumps(HELLO), "format": "json"}
    assert requests.post(coord.api("/jobs"), json=body, headers=headers).status_code == 403


def test_old_or_missing_protocol_is_refused(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    token = coord.token(role="pilot", vo=vo)
    body = {"hostname": "h", "pilot_version": "0.0.1"}
    old = requests.post(
        coord.api("/pilots"), json=body, headers={**coord.headers(token), PROTOCOL_HEADER: "0"}
    )
    assert (old.status_code, old.json()["code"]) == (426, "pilot_too_old")
    old_body = requests.post(
        coord.api("/pilots"), json={**body, "protocol_version": 0}, headers=coord.headers(token)
    )
    assert old_body.status_code == 426
    missing = requests.post(
        coord.api("/pilots"), json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert missing.status_code == 400


@pytest.mark.parametrize(
    "body",
    [{"status": "Sleeping"}, {"status": "Running", "exit_code": "zero"}, {}, [], "Running"],
)
def test_malformed_status_updates_are_400(
    shared_coordinator: RunningCoordinator, vo: str, body: Any
) -> None:
    coord = shared_coordinator
    job_id = submit(coord, vo)
    pilot = PilotSession(coord, vo)
    pilot.match()
    reply = requests.post(
        coord.api(f"/jobs/{job_id}/status"),
        json=body,
        headers={**pilot.headers(), "X-Gridpilot-Pilot": pilot.pilot_id},
    )
    assert (reply.status_code, reply.json()["code"]) == (400, "bad_request")
    assert job(coord, vo, job_id)["status"] == "Matched"
