"""Users' job endpoints against a real coordinator process."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.conftest import RunningCoordinator

HELLO = {"Executable": "/bin/echo", "Arguments": "hello world", "JobName": "hello"}


def submit(
    coord: RunningCoordinator, token: str, description: Any, fmt: str = "json", **extra: Any
) -> list[int]:
    text = description if isinstance(description, str) else json.dumps(description)
    body = {"description": text, "format": fmt, **extra}
    reply = requests.post(coord.api("/jobs"), json=body, headers=coord.headers(token))
    assert reply.status_code == 201, reply.text
    job_ids: list[int] = reply.json()["job_ids"]
    return job_ids


def get_job(coord: RunningCoordinator, token: str, job_id: int) -> requests.Response:
    return requests.get(coord.api(f"/jobs/{job_id}"), headers=coord.headers(token))


def test_submitted_job_waits_with_dirac_history(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    token = coord.token(subject="alice", vo=vo, group="vo_user")
    [job_id] = submit(coord, token, HELLO)

    info = get_job(coord, token, job_id).json()
    assert info["status"] == "Waiting"
    assert info["job_name"] == "hello"
    assert (info["owner"], info["owner_group"], info["vo"]) == ("alice", "vo_user", vo)
    assert info["site"] == "ANY"
    assert info["description"]["Executable"] == "/bin/echo"
    assert info["created_at"].endswith("+00:00")

    history = requests.get(coord.api(f"/jobs/{job_id}/history"), headers=coord.headers(token))
    entries = history.json()["history"]
    assert [(e["status"], e["source"]) for e in entries] == [
        ("Received", "JobManager"),
        ("Checking", "JobSanity"),
        ("Waiting", "JobScheduling"),
    ]
    assert all(e["at"].endswith("+00:00") for e in entries)


def test_jdl_submission(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    token = coord.token(vo=vo)
    jdl = """
    [
      JobName = "jdl-job";  // a comment
      Executable = "/bin/sh";
      Arguments = "-c 'echo hi'";
      Site = "LCG.CERN.cern";
      Tags = {"GPU", "cvmfs"};
      Priority = 5;
    ]
    """
    [job_id] = submit(coord, token, jdl, fmt="jdl")
    info = get_job(coord, token, job_id).json()
    assert info["job_name"] == "jdl-job"
    assert info["site"] == "LCG.CERN.cern"
    assert info["description"]["Tags"] == ["GPU", "cvmfs"]


def test_identity_comes_from_the_token_not_the_description(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    token = coord.token(subject="alice", vo=vo)
    [job_id] = submit(coord, token, {**HELLO, "owner": "mallory", "VO": "other", "OwnerGroup": "x"})
    info = get_job(coord, token, job_id).json()
    assert (info["owner"], info["vo"], info["owner_group"]) == ("alice", vo, "")
    described = {k.lower(): v for k, v in info["description"].items()}
    assert (described["owner"], described["vo"]) == ("alice", vo)


def test_parametric_submission_gives_one_job_per_parameter(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    token = coord.token(vo=vo)
    description = {**HELLO, "Arguments": "%s", "JobName": "p_%n_%j", "Parameters": ["a", "b", "c"]}
    job_ids = submit(coord, token, description)
    assert len(job_ids) == 3
    listed = requests.get(
        coord.api("/jobs"),
        params={"ids": ",".join(map(str, job_ids))},
        headers=coord.headers(token),
    ).json()["jobs"]
    assert [j["job_name"] for j in listed] == [f"p_{n}_{i}" for n, i in enumerate(job_ids)]
    arguments = [
        requests.get(coord.api(f"/jobs/{i}"), headers=coord.headers(token)).json()["description"]
        for i in job_ids
    ]
    assert [a["Arguments"] for a in arguments] == ["a", "b", "c"]


def test_ten_thousand_parametric_jobs_are_stored_by_one_request(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    # How fast is measured in bench/ (the portal and matching benches seed through the same
    # submit); here, that one request stores them all, each once, well within a client's
    # patience even with the suite's other workers on the same two cores.
    coord = shared_coordinator
    token = coord.token(vo=vo)
    description = {**HELLO, "Parameters": 10_000, "ParameterStart": 0, "ParameterStep": 1}
    started = time.monotonic()
    job_ids = submit(coord, token, description)
    elapsed_s = time.monotonic() - started
    assert len(set(job_ids)) == 10_000
    assert elapsed_s < 60, f"10,000 jobs took {elapsed_s:.1f} s"
    last = get_job(coord, token, job_ids[-1]).json()
    assert last["status"] == "Waiting"


def test_other_users_jobs_are_not_found_but_admins_see_them(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    alice = coord.token(subject="alice", vo=vo)
    bob = coord.token(subject="bob", vo=vo)
    admin = coord.token(role="admin", subject="root", vo="ops")
    [job_id] = submit(coord, alice, HELLO)

    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/history"):
        reply = requests.get(coord.api(path), headers=coord.headers(bob))
        assert reply.status_code == 404
        assert reply.json()["code"] == "not_found"
    for call in (requests.post, requests.delete):
        path = f"/jobs/{job_id}/kill" if call is requests.post else f"/jobs/{job_id}"
        assert call(coord.api(path), headers=coord.headers(bob)).status_code == 404
    listed = requests.get(
        coord.api("/jobs"), params={"ids": str(job_id)}, headers=coord.headers(bob)
    )
    assert listed.json()["jobs"] == []

    assert get_job(coord, admin, job_id).json()["owner"] == "alice"
    assert get_job(coord, alice, job_id).json()["status"] == "Waiting"


def test_kill_of_a_waiting_job_is_immediate(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    token = coord.token(vo=vo)
    [job_id] = submit(coord, token, HELLO)
    reply = requests.post(coord.api(f"/jobs/{job_id}/kill"), headers=coord.headers(token))
    assert reply.status_code == 200
    assert reply.json()["status"] == "Killed"
    history = requests.get(coord.api(f"/jobs/{job_id}/history"), headers=coord.headers(token))
    assert history.json()["history"][-1]["status"] == "Killed"


def test_delete_hides_a_job_from_listings(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    token = coord.token(vo=vo)
    kept, deleted = submit(coord, token, HELLO), submit(coord, token, HELLO)
    reply = requests.delete(coord.api(f"/jobs/{deleted[0]}"), headers=coord.headers(token))
    assert reply.status_code == 200
    assert reply.json()["status"] == "Deleted"
    listed = requests.get(coord.api("/jobs"), headers=coord.headers(token)).json()["jobs"]
    assert [j["job_id"] for j in listed] == kept
    again = requests.delete(coord.api(f"/jobs/{deleted[0]}"), headers=coord.headers(token))
    assert again.status_code == 409
    assert again.json()["details"] == {"from": "Deleted", "to": "Deleted"}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"format": "json"}', "application/json"),
        (b'{"description": 5, "format": "json"}', "application/json"),
        (b'{"description": "{}", "input_sandboxes": "abc"}', "application/json"),
        (b'{"description": "x"}', "text/plain"),
        (b"", "application/json"),
    ],
)
def test_malformed_bodies_get_a_400_json_error(
    shared_coordinator: RunningCoordinator, body: bytes, content_type: str
) -> None:
    coord = shared_coordinator
    headers = coord.headers(coord.token(), **{"Content-Type": content_type})
    reply = requests.post(coord.api("/jobs"), data=body, headers=headers)
    assert reply.status_code == 400, reply.text
    error = reply.json()
    assert error["code"] == "bad_request"
    assert set(error) == {"code", "message", "details"}


@pytest.mark.parametrize(
    ("description", "fmt", "code"),
    [
        ("[ Executable = ", "jdl", "jdl_syntax"),
        (json.dumps({"Arguments": "x"}), "json", "invalid_description"),
        (json.dumps(HELLO), "xml", "bad_request"),
    ],
)
def test_bad_descriptions_are_refused_and_nothing_is_stored(
    shared_coordinator: RunningCoordinator, vo: str, description: str, fmt: str, code: str
) -> None:
    coord = shared_coordinator
    token = coord.token(vo=vo)
    body = {"description": description, "format": fmt}
    reply = requests.post(coord.api("/jobs"), json=body, headers=coord.headers(token))
    assert reply.status_code == 400
    assert reply.json()["code"] == code
    assert requests.get(coord.api("/jobs"), headers=coord.headers(token)).json()["jobs"] == []


def test_unknown_input_sandbox_is_refused(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    token = coord.token(vo=vo)
    body = {"description": json.dumps(HELLO), "format": "json", "input_sandboxes": ["ab" * 32]}
    reply = requests.post(coord.api("/jobs"), json=body, headers=coord.headers(token))
    assert (reply.status_code, reply.json()["code"]) == (404, "not_found")
    assert reply.json()["details"] == {"missing": ["ab" * 32]}
    assert requests.get(coord.api("/jobs"), headers=coord.headers(token)).json()["jobs"] == []


def test_unknown_job_and_bad_ids(shared_coordinator: RunningCoordinator) -> None:
    coord = shared_coordinator
    headers = coord.headers(coord.token())
    assert requests.get(coord.api("/jobs/999999"), headers=headers).status_code == 404
    bad_path = requests.get(coord.api("/jobs/abc"), headers=headers)
    assert (bad_path.status_code, bad_path.json()["code"]) == (400, "bad_request")
    bad_ids = requests.get(coord.api("/jobs"), params={"ids": "1,x"}, headers=headers)
    assert (bad_ids.status_code, bad_ids.json()["code"]) == (400, "bad_request")
    unknown = requests.get(coord.api("/nowhere"), headers=headers)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")


def test_oversized_json_body_is_refused(
    start_coordinator: Callable[..., RunningCoordinator],
) -> None:
    coord = start_coordinator(max_request_bytes=2048)
    token = coord.token()
    description = json.dumps({**HELLO, "Comment": "x" * 4096})
    body = {"description": description, "format": "json"}
    reply = requests.post(coord.api("/jobs"), json=body, headers=coord.headers(token))
    assert reply.status_code == 413
    assert reply.json()["code"] == "too_large"

    encoded = json.dumps(body).encode()
    chunked = (encoded[i : i + 1000] for i in range(0, len(encoded), 1000))
    headers = coord.headers(token, **{"Content-Type": "application/json"})
    streamed = requests.post(coord.api("/jobs"), data=chunked, headers=headers)
    assert (streamed.status_code, streamed.json()["code"]) == (413, "too_large")

    small = {"description": json.dumps(HELLO), "format": "json"}
    assert requests.post(coord.api("/jobs"), json=small, headers=headers).status_code == 201


def test_health_needs_no_token(shared_coordinator: RunningCoordinator) -> None:
    reply = requests.get(f"{shared_coordinator.url}/health")
    assert reply.json()["status"] == "ok"
    assert "/api/v1/jobs" in requests.get(f"{shared_coordinator.url}/openapi.json").json()["paths"]
