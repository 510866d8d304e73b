"""Content addressing never grants access: a sandbox is readable and referable only by its
owners (who uploaded its bytes, and the owner of the job it is the output of) and by the
pilots of jobs that use it, whatever digest a caller names."""

from __future__ import annotations

import json
from typing import Any

import requests

from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot
from tests.coordinator.test_api_sandboxes import download, tarball, upload

JOB = json.dumps({"Executable": "/bin/cat", "InputSandbox": ["secret.txt"]})


def submit(coord: RunningCoordinator, token: str, digests: list[str]) -> requests.Response:
    body = {"description": JOB, "format": "json", "input_sandboxes": digests}
    return requests.post(coord.api("/jobs"), json=body, headers=coord.headers(token))


def alice_and_bob(coord: RunningCoordinator, vo: str) -> tuple[str, str]:
    """Tokens of two users of one VO."""
    return coord.token(subject="alice", vo=vo), coord.token(subject="bob", vo=vo)


def without_digest(reply: requests.Response, digest: str) -> tuple[int, Any]:
    """Status and body with the digest blanked out, to compare two refusals."""
    return reply.status_code, json.loads(reply.text.replace(digest, "<digest>"))


def test_naming_another_users_input_sandbox_is_refused_like_a_missing_one(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    alice, bob = alice_and_bob(coord, vo)
    secret = tarball({"secret.txt": b"alice's private input"})
    digest = upload(coord, alice, secret).json()["sha256"]
    never_stored = "ab" * 32

    stolen = submit(coord, bob, [digest])
    absent = submit(coord, bob, [never_stored])
    assert stolen.status_code == 404, stolen.text
    assert stolen.json()["code"] == "not_found"
    assert stolen.json()["details"] == {"missing": [digest]}
    # Same answer as for a digest nobody ever uploaded: bob learns nothing.
    assert without_digest(stolen, digest) == without_digest(absent, never_stored)
    assert download(coord, bob, digest).status_code == 404
    bob_jobs = requests.get(coord.api("/jobs"), headers=coord.headers(bob)).json()["jobs"]
    assert bob_jobs == []
    # The owner still uses it.
    assert submit(coord, alice, [digest]).status_code == 201


def test_identical_upload_makes_a_second_owner_without_telling_him(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    alice, bob = alice_and_bob(coord, vo)
    data = tarball({"common.txt": b"the same bytes for both\n"})
    assert upload(coord, alice, data).status_code == 201
    # 201 as for any new sandbox of his: a 200 would tell bob that someone has these bytes.
    assert upload(coord, bob, data).status_code == 201
    assert upload(coord, bob, data).status_code == 200  # now it is his already
    digest = upload(coord, alice, data).json()["sha256"]
    stored = list((coord.data_dir / "sandboxes").rglob(digest))
    assert len(stored) == 1  # stored once
    for owner in (alice, bob):
        assert download(coord, owner, digest).content == data
        assert submit(coord, owner, [digest]).status_code == 201
    other_vo_bob = coord.token(subject="bob", vo=vo + "-other")
    assert download(coord, other_vo_bob, digest).status_code == 404
    assert submit(coord, other_vo_bob, [digest]).status_code == 404


def _run_to_done(pilot: FakePilot, job_id: int, output_sandbox: str) -> requests.Response:
    assert pilot.match() == [job_id]
    assert pilot.report(job_id, "Running").status_code == 200
    return pilot.report(job_id, "Done", exit_code=0, output_sandbox=output_sandbox)


def test_output_sandbox_belongs_to_the_jobs_owner(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    alice, bob = alice_and_bob(coord, vo)
    pilot = FakePilot(coord, vo)
    [job_id] = submit(coord, alice, []).json()["job_ids"]
    output = tarball({"result.txt": b"alice's result"})
    digest = upload(coord, pilot.token, output).json()["sha256"]
    assert _run_to_done(pilot, job_id, digest).status_code == 200

    assert download(coord, alice, digest).content == output
    # Alice owns it now: she may feed it to her next job; bob may neither read nor name it.
    assert submit(coord, alice, [digest]).status_code == 201
    assert download(coord, bob, digest).status_code == 404
    assert submit(coord, bob, [digest]).status_code == 404


def test_a_pilot_cannot_pass_someone_elses_sandbox_off_as_an_output(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    """A pilot running bob's job names alice's input as its output: bob would then read it."""
    coord = shared_coordinator
    alice, bob = alice_and_bob(coord, vo)
    digest = upload(coord, alice, tarball({"secret.txt": b"alice's input"})).json()["sha256"]
    pilot = FakePilot(coord, vo)
    [job_id] = submit(coord, bob, []).json()["job_ids"]

    reply = _run_to_done(pilot, job_id, digest)
    assert reply.status_code == 404, reply.text
    assert reply.json()["details"] == {"missing": [digest]}
    assert download(coord, bob, digest).status_code == 404
    job = requests.get(coord.api(f"/jobs/{job_id}"), headers=coord.headers(bob)).json()
    assert (job["status"], job["output_sandbox"]) == ("Running", "")
    # Its own upload is accepted.
    own = upload(coord, pilot.token, tarball({"out.txt": b"bob's result"})).json()["sha256"]
    done = pilot.report(job_id, "Done", exit_code=0, output_sandbox=own)
    assert done.status_code == 200, done.text
    assert download(coord, bob, own).status_code == 200


def test_pilots_read_only_the_sandboxes_of_their_vos_jobs(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    alice = coord.token(subject="alice", vo=vo)
    digest = upload(coord, alice, tarball({"secret.txt": b"input"})).json()["sha256"]
    holder = FakePilot(coord, vo, subject="factory-a")
    other_factory = FakePilot(coord, vo, subject="factory-b")
    other_vo = FakePilot(coord, vo + "-other", subject="factory-a")
    for pilot in (holder, other_factory, other_vo):
        assert download(coord, pilot.token, digest).status_code == 404
    [job_id] = submit(coord, alice, [digest]).json()["job_ids"]
    assert other_vo.match() == []
    assert holder.match() == [job_id]
    assert download(coord, holder.token, digest).status_code == 200
    assert download(coord, other_factory.token, digest).status_code == 404
    assert download(coord, other_vo.token, digest).status_code == 404
