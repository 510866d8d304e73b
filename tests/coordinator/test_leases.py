"""Leases: stalled jobs, rescheduling, infrastructure failures, ``reschedule`` by hand.

The rule (``decide``) is tested as a pure function with a fake clock; the behaviour against a
real coordinator whose timeouts are a second or two, with pilots that go quiet on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from coordinator.app import build_context
from coordinator.logic.auth import TokenClaims
from coordinator.logic.jobs import get_job, submit
from coordinator.logic.leases import LeaseAction, LeasePolicy, LeaseView, decide, decide_all
from coordinator.settings import Settings
from coordinator.store import jobs as job_store
from coordinator.sweeper import Sweeper
from protocol import JobStatus, Role, SubmitRequest
from tests.conftest import RunningCoordinator, _stop_and_check, launch_coordinator
from tests.coordinator.pilot_calls import FakePilot, User, wait_for

S = JobStatus
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
POLICY = LeasePolicy(match_timeout_s=600, heartbeat_timeout_s=90, stalled_grace_s=300)


def view(
    status: JobStatus, changed_s_ago: float, beat_s_ago: float | None = None, **kw: bool
) -> LeaseView:
    beat = None if beat_s_ago is None else T0 - timedelta(seconds=beat_s_ago)
    return LeaseView(1, status, T0 - timedelta(seconds=changed_s_ago), beat, **kw)


# -- the rule, with a fake clock ----------------------------------------------------------


def test_running_job_is_stalled_only_after_the_heartbeat_timeout() -> None:
    assert decide(T0, view(S.RUNNING, 1000, beat_s_ago=89), POLICY) is None
    decision = decide(T0, view(S.RUNNING, 1000, beat_s_ago=91), POLICY)
    assert decision is not None
    assert decision.action is LeaseAction.STALL
    assert decision.reason == "No heartbeat for 91 s"


def test_a_status_report_counts_as_contact_like_a_heartbeat() -> None:
    assert decide(T0, view(S.COMPLETING, 30, beat_s_ago=500), POLICY) is None


def test_matched_job_not_started_is_rescheduled_after_the_match_timeout() -> None:
    assert decide(T0, view(S.MATCHED, 599), POLICY) is None
    decision = decide(T0, view(S.MATCHED, 601), POLICY)
    assert decision is not None and decision.action is LeaseAction.RESCHEDULE


def test_stalled_job_is_given_up_after_the_grace_counted_from_when_it_stalled() -> None:
    assert decide(T0, view(S.STALLED, 299, beat_s_ago=1000), POLICY) is None
    decision = decide(T0, view(S.STALLED, 301, beat_s_ago=1000), POLICY)
    assert decision is not None and decision.action is LeaseAction.GIVE_UP


def test_kill_requested_and_pilot_gone_means_killed() -> None:
    decision = decide(T0, view(S.RUNNING, 200, kill_requested=True), POLICY)
    assert decision is not None and decision.action is LeaseAction.KILL


@pytest.mark.parametrize("status", [S.WAITING, S.DONE, S.FAILED, S.KILLED, S.RESCHEDULED])
def test_jobs_no_pilot_holds_have_no_lease(status: JobStatus) -> None:
    assert decide(T0, view(status, 10**6), POLICY) is None


@given(
    status=st.sampled_from([S.MATCHED, S.RUNNING, S.COMPLETING, S.STALLED]),
    changed_s=st.floats(0, 10_000),
    beat_s=st.one_of(st.none(), st.floats(0, 10_000)),
)
def test_a_lease_expires_exactly_when_its_silence_reaches_the_timeout(
    status: JobStatus, changed_s: float, beat_s: float | None
) -> None:
    job = view(status, changed_s, beat_s)
    timeout_s = POLICY.timeout_s(status)
    assert timeout_s is not None
    since = job.changed_at if status is S.STALLED else job.last_contact
    expired = (T0 - since).total_seconds() >= timeout_s
    assert (decide(T0, job, POLICY) is not None) == expired
    assert len(decide_all(T0, [job, job], POLICY)) == (2 if expired else 0)


# -- the sweeper over a real database, with a fake clock ---------------------------------


def test_sweeper_acts_on_what_its_clock_says(tmp_path: Path, database_url: str) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url=database_url, match_timeout_s=600, max_reschedules=1
    )
    db = build_context(settings).db
    alice = TokenClaims("alice", "vo1", Role.USER, "", T0 + timedelta(days=1), "t1")
    request = SubmitRequest(description='{"Executable": "/bin/true"}', format="json")
    (job_id,) = submit(db, settings, alice, request)
    with db.write() as conn:
        job_store.change_status(
            conn,
            job_id,
            expected=S.WAITING,
            status=S.MATCHED,
            minor_status="Assigned",
            application_status="",
            source="Matcher",
            pilot_id="pilot-1",
        )
    matched_at = datetime.fromisoformat(get_job(db, alice, job_id).updated_at)
    sweeper = Sweeper(db, settings, clock=lambda: matched_at + timedelta(seconds=599))
    assert sweeper.sweep_once() == []
    sweeper = Sweeper(db, settings, clock=lambda: matched_at + timedelta(seconds=601))
    (decision,) = sweeper.sweep_once()
    assert (decision.job_id, decision.action) == (job_id, LeaseAction.RESCHEDULE)
    info = get_job(db, alice, job_id)
    assert (info.status, info.pilot_id, info.reschedule_count) == (S.WAITING, "", 1)
    assert sweeper.sweep_once() == []  # nothing left to do
    db.dispose()


# -- against a real coordinator -----------------------------------------------------------

FAST = {
    "heartbeat_timeout_s": 1,
    "match_timeout_s": 1,
    "stalled_grace_s": 1.5,
    "sweep_interval_s": 0.2,
    "max_reschedules": 2,
}


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCoordinator]:
    """A coordinator whose leases expire within a second or two."""
    running = launch_coordinator(tmp_path_factory.mktemp("fast-leases"), **FAST)
    yield running
    _stop_and_check(running)


def status_of(user: User, job_id: int, wanted: str) -> bool:
    return bool(user.job(job_id)["status"] == wanted)


def test_silent_running_job_stalls_then_goes_back_to_waiting(
    fast: RunningCoordinator, vo: str
) -> None:
    user, pilot = User(fast, vo), FakePilot(fast, vo)
    (job_id,) = user.submit()
    assert pilot.match() == [job_id]
    assert pilot.report(job_id, "Running").status_code == 200
    wait_for(lambda: status_of(user, job_id, "Stalled"), what="Stalled")
    info = wait_for(lambda: status_of(user, job_id, "Waiting") and user.job(job_id), what="Waiting")
    assert info["pilot_id"] == "" and info["reschedule_count"] == 1
    history = user.history(job_id)
    assert [h[0] for h in history[-5:]] == [
        "Running",
        "Stalled",
        "Failed",
        "Rescheduled",
        "Waiting",
    ]
    assert history[-4][1].startswith("No heartbeat for")
    assert history[-4][2] == "StalledJobAgent"
    assert history[-3][1] == "Job stalled: pilot not running"
    assert history[-2][1].startswith("Job Rescheduled: its pilot was silent")
    # The pilot that lost the job may neither heartbeat nor report it any more.
    for reply in (pilot.heartbeat(job_id), pilot.report(job_id, "Done", exit_code=0)):
        assert reply.status_code == 409
        assert reply.json()["code"] == "lease_lost"
    # Another pilot gets it.
    assert FakePilot(fast, vo, subject="other").match() == [job_id]


@pytest.mark.slow  # its own coordinator, and two stalls of a second each
def test_heartbeat_from_the_same_pilot_brings_a_stalled_job_back(tmp_path: Path, vo: str) -> None:
    coord = launch_coordinator(tmp_path / "slow-grace", **{**FAST, "stalled_grace_s": 60})
    try:
        user, pilot = User(coord, vo), FakePilot(coord, vo)
        (job_id,) = user.submit()
        pilot.match()
        pilot.report(job_id, "Running")
        wait_for(lambda: status_of(user, job_id, "Stalled"), what="Stalled")
        reply = pilot.heartbeat(job_id)
        assert reply.status_code == 200, reply.text
        assert user.job(job_id)["status"] == "Running"
        assert user.history(job_id)[-1][:1] == ("Running",)
        # A final report straight from Stalled is accepted too: the pilot is back.
        wait_for(lambda: status_of(user, job_id, "Stalled"), what="Stalled again")
        reply = pilot.report(job_id, "Done", exit_code=0, minor_status="Execution Complete")
        assert reply.status_code == 200, reply.text
        assert [h[0] for h in user.history(job_id)[-3:]] == ["Stalled", "Running", "Done"]
    finally:
        _stop_and_check(coord)


def test_matched_job_never_started_is_rescheduled(fast: RunningCoordinator, vo: str) -> None:
    user, pilot = User(fast, vo), FakePilot(fast, vo)
    (job_id,) = user.submit()
    pilot.match()
    wait_for(lambda: status_of(user, job_id, "Waiting"), what="Waiting again")
    statuses = [h[0] for h in user.history(job_id)]
    assert statuses[-3:] == ["Matched", "Rescheduled", "Waiting"]
    assert "not started 1 s after its match" in user.history(job_id)[-2][1]


@pytest.mark.slow  # three lost leases in a row
def test_after_max_reschedules_the_job_fails_with_diracs_minor_status(
    fast: RunningCoordinator, vo: str
) -> None:
    user = User(fast, vo)
    (job_id,) = user.submit()
    for attempt in range(FAST["max_reschedules"] + 1):
        pilot = FakePilot(fast, vo, subject=f"factory-{attempt}")
        assert pilot.match() == [job_id]
        wait_for(lambda: user.job(job_id)["status"] in ("Waiting", "Failed"), what="lease lost")
    info = user.job(job_id)
    assert (info["status"], info["minor_status"]) == ("Failed", "Maximum of reschedulings reached")
    assert info["reschedule_count"] == FAST["max_reschedules"]
    assert FakePilot(fast, vo, subject="late").match() == []


def test_infrastructure_failure_is_rescheduled_not_failed(
    fast: RunningCoordinator, vo: str
) -> None:
    user, pilot = User(fast, vo), FakePilot(fast, vo)
    (job_id,) = user.submit()
    pilot.match()
    pilot.report(job_id, "Running")
    reply = pilot.report(
        job_id, "Failed", minor_status="Container image missing", infrastructure_error=True
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "Waiting"
    history = user.history(job_id)
    assert [h[0] for h in history[-3:]] == ["Failed", "Rescheduled", "Waiting"]
    assert history[-2][1] == "Job Rescheduled: infrastructure failure: Container image missing"
    # A payload failure stays a failure.
    pilot2 = FakePilot(fast, vo, subject="second")
    pilot2.match()
    pilot2.report(job_id, "Running")
    assert pilot2.report(job_id, "Failed", exit_code=3).json()["status"] == "Failed"


def test_killed_job_whose_pilot_vanished_ends_killed(fast: RunningCoordinator, vo: str) -> None:
    user, pilot = User(fast, vo), FakePilot(fast, vo)
    (job_id,) = user.submit()
    pilot.match()
    pilot.report(job_id, "Running")
    assert user.post(f"/jobs/{job_id}/kill").status_code == 200
    info = wait_for(lambda: status_of(user, job_id, "Killed") and user.job(job_id), what="Killed")
    assert info["minor_status"].startswith("Killed: its pilot stopped answering")


# -- reschedule by hand -------------------------------------------------------------------


def test_user_reschedules_a_failed_job_and_it_runs_again(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    user, pilot = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    (job_id,) = user.submit()
    pilot.match()
    pilot.report(job_id, "Running")
    pilot.report(job_id, "Failed", exit_code=2)
    reply = user.post(f"/jobs/{job_id}/reschedule")
    assert reply.status_code == 200, reply.text
    info = reply.json()
    assert (info["status"], info["exit_code"], info["reschedule_count"]) == ("Waiting", None, 1)
    assert user.history(job_id)[-2] == ("Rescheduled", "Job Rescheduled", "JobManager")
    assert pilot.match() == [job_id]


@pytest.mark.parametrize("final", ["Done", "Killed"])
def test_done_and_killed_jobs_can_be_rescheduled_as_in_dirac(
    shared_coordinator: RunningCoordinator, vo: str, final: str
) -> None:
    user, pilot = User(shared_coordinator, vo), FakePilot(shared_coordinator, vo)
    (job_id,) = user.submit()
    pilot.match()
    pilot.report(job_id, "Running")
    pilot.report(job_id, final)
    assert user.post(f"/jobs/{job_id}/reschedule").json()["status"] == "Waiting"


def test_reschedule_refusals(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    user = User(coord, vo)
    (job_id,) = user.submit()
    waiting = user.post(f"/jobs/{job_id}/reschedule")
    assert (waiting.status_code, waiting.json()["code"]) == (409, "invalid_transition")
    assert user.job(job_id)["status"] == "Waiting"
    # Another user's job does not exist for them; pilots may not reschedule.
    assert User(coord, vo, subject="bob").post(f"/jobs/{job_id}/reschedule").status_code == 404
    pilot = FakePilot(coord, vo)
    reply = requests.post(coord.api(f"/jobs/{job_id}/reschedule"), headers=pilot.headers())
    assert reply.status_code == 403


def test_reschedule_limit_is_refused_until_reset(shared_coordinator: RunningCoordinator, vo: str):
    user = User(shared_coordinator, vo)
    admin = User(shared_coordinator, vo, subject="ops", role="admin")
    (job_id,) = user.submit()
    for _ in range(3):  # the default max_reschedules
        pilot = FakePilot(shared_coordinator, vo)
        pilot.match()
        pilot.report(job_id, "Running")
        pilot.report(job_id, "Failed", exit_code=1)
        assert admin.post(f"/jobs/{job_id}/reschedule").status_code == 200
    FakePilot(shared_coordinator, vo).match()
    refused = user.post(f"/jobs/{job_id}/reschedule")
    assert (refused.status_code, refused.json()["code"]) == (409, "reschedule_limit")
    assert user.job(job_id)["status"] == "Matched"
    reset = user.post(f"/jobs/{job_id}/reschedule", reset="true")
    assert reset.status_code == 200
    assert reset.json()["reschedule_count"] == 1
