"""``GET /api/v1/jobs`` filters and counts, and the CLI commands that follow jobs
(``jobs``, ``reschedule``, ``logs``, ``peek``) run as real processes."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot, User, gridpilot


@pytest.fixture
def mixed_jobs(shared_coordinator: RunningCoordinator, vo: str) -> dict[str, Any]:
    """alice: one Done and one Running job (group g2, at SITE-A), two Waiting (group g1);
    bob: one Waiting."""
    coord = shared_coordinator
    # The admin below sees every VO of the shared coordinator: bob's name is this test's own.
    alice, bob = User(coord, vo), User(coord, vo, subject=f"bob-{vo}")
    pilot = FakePilot(coord, vo, site="SITE-A")
    ran = []
    for final in ("Done", "Running"):
        (job_id,) = alice.submit(JobGroup="g2")
        assert pilot.match() == [job_id]
        pilot.report(job_id, "Running")
        if final == "Done":
            pilot.report(job_id, "Done", exit_code=0)
        ran.append(job_id)
    waiting = alice.submit(JobGroup="g1") + alice.submit(JobGroup="g1")
    (bob_job,) = bob.submit()
    return {"alice": alice, "ids": ran + waiting, "bob": f"bob-{vo}", "bob_job": bob_job}


def test_listing_filters_and_counts(mixed_jobs: dict[str, Any]) -> None:
    alice: User = mixed_jobs["alice"]
    reply = alice.get("/jobs").json()
    assert sorted(info["job_id"] for info in reply["jobs"]) == mixed_jobs["ids"]
    assert reply["counts"] == {"Done": 1, "Running": 1, "Waiting": 2}
    done_only = alice.get("/jobs", status="done").json()
    assert [info["status"] for info in done_only["jobs"]] == ["Done"]
    assert done_only["counts"] == reply["counts"]  # counts ignore the status filter
    two = alice.get("/jobs", status="Done,Waiting").json()["jobs"]
    assert sorted(info["status"] for info in two) == ["Done", "Waiting", "Waiting"]
    g1 = alice.get("/jobs", job_group="g1").json()
    assert [info["job_group"] for info in g1["jobs"]] == ["g1", "g1"]
    assert alice.get("/jobs", site="SITE-A").json()["counts"] == {"Done": 1, "Running": 1}
    assert alice.get("/jobs", site="NOWHERE").json() == {
        "jobs": [],
        "counts": {},
        "next_cursor": None,
    }
    newest = alice.get("/jobs", limit=1).json()["jobs"]
    assert [info["job_id"] for info in newest] == [max(mixed_jobs["ids"])]


def test_owner_filter_is_for_admins(mixed_jobs: dict[str, Any], vo: str) -> None:
    alice: User = mixed_jobs["alice"]
    refused = alice.get("/jobs", owner="bob")
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert alice.get("/jobs", owner="alice").status_code == 200
    admin = User(alice.coord, vo, subject="ops", role="admin")
    bobs = admin.get("/jobs", owner=mixed_jobs["bob"]).json()
    assert [info["job_id"] for info in bobs["jobs"]] == [mixed_jobs["bob_job"]]
    assert bobs["counts"] == {"Waiting": 1}
    bad = alice.get("/jobs", status="Sleeping")
    assert (bad.status_code, bad.json()["details"]["status"]) == (400, "Sleeping")


def test_deleted_jobs_are_listed_only_when_asked_for(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user = User(shared_coordinator, vo)
    (job_id,) = user.submit()
    assert requests_delete(user, job_id) == 200
    assert user.get("/jobs").json() == {"jobs": [], "counts": {}, "next_cursor": None}
    deleted = user.get("/jobs", status="Deleted").json()["jobs"]
    assert [info["job_id"] for info in deleted] == [job_id]


def requests_delete(user: User, job_id: int) -> int:
    return requests.delete(user.coord.api(f"/jobs/{job_id}"), headers=user.headers()).status_code


def test_cli_jobs_table_and_json(mixed_jobs: dict[str, Any]) -> None:
    alice: User = mixed_jobs["alice"]
    table = gridpilot(alice.coord, alice.token, "jobs", "--group", "g1")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["JobID", "Status", "MinorStatus"]
    assert len(lines) == 1 + 2 + 1
    assert lines[-1] == "2 job(s): Waiting: 2"
    as_json = gridpilot(alice.coord, alice.token, "jobs", "--status", "Done", "--json")
    assert '"Done": 1' in as_json.stdout
    refused = gridpilot(alice.coord, alice.token, "jobs", "--owner", "bob")
    assert refused.returncode == 4  # not authorised
    assert "only admins may list other users' jobs" in refused.stderr


def test_cli_reschedule(shared_coordinator: RunningCoordinator, vo: str) -> None:
    user, pilot = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    (job_id,) = user.submit()
    pilot.match()
    pilot.report(job_id, "Running")
    pilot.report(job_id, "Failed", exit_code=1)
    done = gridpilot(shared_coordinator, user.token, "reschedule", str(job_id))
    assert (done.returncode, done.stdout) == (0, f"Rescheduled job {job_id}\n")
    again = gridpilot(shared_coordinator, user.token, "reschedule", str(job_id))
    assert again.returncode == 1
    assert again.stderr == (
        f"gridpilot: job {job_id} is Waiting; only jobs that ran or were given to a pilot "
        "can be rescheduled\n"
    )


def test_cli_logs_follow_until_the_job_ends_and_peek(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user, pilot = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    (job_id,) = user.submit()
    pilot.match()
    pilot.report(job_id, "Running")
    lines = [f"step {i}\n".encode() for i in range(30)]
    pilot.append_log(job_id, b"".join(lines[:10]), 0)
    peek = gridpilot(shared_coordinator, user.token, "peek", str(job_id), "--lines", "3")
    assert peek.stdout == "step 7\nstep 8\nstep 9\n"

    def finish() -> None:
        time.sleep(1.0)
        pilot.append_log(job_id, b"".join(lines[10:]), len(b"".join(lines[:10])))
        pilot.report(job_id, "Done", exit_code=0)

    writer = threading.Thread(target=finish)
    writer.start()
    args = ("logs", str(job_id), "--follow", "--poll-s", "0.2")
    follow = gridpilot(shared_coordinator, user.token, *args)
    writer.join()
    assert follow.returncode == 0, follow.stderr
    assert follow.stdout == b"".join(lines).decode()
    stderr = gridpilot(shared_coordinator, user.token, "logs", str(job_id), "--stream", "stderr")
    assert (stderr.returncode, stderr.stdout) == (0, "")
