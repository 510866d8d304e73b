"""The pilot's pure parts: spool files, re-check schedule, registration facts, self-pipe."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.api import CheckSpec
from checks.builtin.batch_slot import BatchSlot
from pilot.client import CoordinatorClient, RetryPolicy
from pilot.config import PilotConfig, load_config
from pilot.errors import CoordinatorUnreachable
from pilot.node import ce_from_env
from pilot.rechecks import RecheckSchedule
from pilot.registration import build_registration, site_and_ce
from pilot.reporting import RunningAnswer
from pilot.signals import SignalInbox, Waker
from pilot.slots import NodeCapacity, RunningJob
from pilot.spool import ResultSpool, SpooledReport
from protocol import CheckReport, CheckStatus, JobAssignment, JobStatus, JobStatusUpdate


def _config(tmp_path: Path, **values: object) -> PilotConfig:
    cli = {"url": "http://x", "token": "t", "workdir": tmp_path, **values}
    return load_config(cli, {})


def test_spool_keeps_reports_across_instances_and_sets_bad_files_aside(tmp_path: Path) -> None:
    update = JobStatusUpdate(status=JobStatus.DONE, exit_code=0, timings_s={"payload": 1.5})
    ResultSpool(tmp_path).save(SpooledReport("p1", 7, update))
    (tmp_path / "spool" / "job_8.json").write_text("{not json")
    again = ResultSpool(tmp_path)  # as the next pilot in this work dir sees it
    pending = again.pending()
    assert pending == [SpooledReport("p1", 7, update)]
    assert (tmp_path / "spool" / "job_8.bad").exists()
    again.remove(pending[0])
    assert len(again) == 0 and again.pending() == []


def test_spool_keeps_an_undelivered_output_archive_with_its_report(tmp_path: Path) -> None:
    archive = tmp_path / "job_9" / ".gridpilot-output-9.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(b"archive bytes")
    update = JobStatusUpdate(status=JobStatus.DONE, output_sandbox="ab" * 32)
    kept = ResultSpool(tmp_path).save(SpooledReport("p1", 9, update, str(archive)))
    assert not archive.exists()
    moved = tmp_path / "spool" / "outputs" / f"{'ab' * 32}.tar.gz"
    assert kept.output_archive == str(moved) and moved.read_bytes() == b"archive bytes"
    (pending,) = ResultSpool(tmp_path).pending()
    assert pending == kept
    ResultSpool(tmp_path).remove(pending)
    assert not moved.exists()


def _spec(name: str, interval_s: float | None) -> CheckSpec:
    return CheckSpec(name=name, ref=f"m:{name}", interval_s=interval_s)


def test_recheck_schedule_follows_each_interval_and_the_override() -> None:
    specs = [_spec("disk", 10.0), _spec("cores", None)]
    schedule = RecheckSchedule(specs, None, now=100.0)
    assert schedule.due(105.0) == []
    assert [s.name for s in schedule.due(110.0)] == ["disk"]
    schedule.ran(schedule.due(110.0), 111.0)
    assert schedule.next_due_at() == 121.0
    override = RecheckSchedule(specs, 2.0, now=0.0)
    assert sorted(s.name for s in override.due(2.0)) == ["cores", "disk"]


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz.-", min_size=1, max_size=30))
def test_ce_is_the_host_of_arcs_job_url(host: str) -> None:
    env = {"GRID_GLOBAL_JOBID": f"gsiftp://{host}:2811/jobs/abc", "SLURM_CLUSTER_NAME": "c"}
    assert ce_from_env(env) == host


def test_site_and_ce_come_from_config_first_then_the_batch_environment(tmp_path: Path) -> None:
    env = {"SITE_NAME": "ENV.Site", "SLURM_CLUSTER_NAME": "cluster-b"}
    assert site_and_ce(_config(tmp_path), env) == ("ENV.Site", "cluster-b")
    configured = _config(tmp_path, site="CFG.Site", ce="ce.example.org")
    assert site_and_ce(configured, env) == ("CFG.Site", "ce.example.org")
    assert site_and_ce(_config(tmp_path), {}) == ("ANY", "")


def test_registration_refuses_work_naming_the_failed_fatal_check(tmp_path: Path) -> None:
    reports = [
        CheckReport("disk", CheckStatus.FAIL, "10 MB free", {"disk_free_mb": 10}, fatal=True),
        CheckReport("load", CheckStatus.FAIL, "busy", fatal=False),
        CheckReport("platform", CheckStatus.OK, "", {"platform": "x86_64-el9"}, ["x86_64-el9"]),
    ]
    registration = build_registration(
        _config(tmp_path),
        {},
        reports,
        BatchSlot("slurm", "42", None),
        NodeCapacity(cores=4, memory_mb=8000),
        time_left_s=3600,
    )
    assert registration.accepting_work is False
    assert registration.refuse_reason == "fatal check disk failed: 10 MB free"
    assert (registration.batch_system, registration.batch_job_id) == ("slurm", "42")
    assert registration.disk_free_mb == 10 and registration.platform == "x86_64-el9"
    assert registration.tags == ["x86_64-el9"] and registration.time_left_s == 3600


def test_waker_wakes_a_waiting_loop_from_another_thread() -> None:
    waker = Waker()
    try:
        threading.Timer(0.1, waker.wake).start()
        started = time.monotonic()
        waker.wait(5.0)
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        waker.wait(0.2)  # the wake-up was consumed: this one times out
        assert time.monotonic() - started >= 0.19
    finally:
        waker.close()


def test_signal_inbox_collects_signals_without_running_pilot_code() -> None:
    waker = Waker()
    inbox = SignalInbox(waker)
    inbox.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        waker.wait(2.0)
        assert inbox.drain() == [signal.SIGUSR1]
        assert inbox.drain() == []
    finally:
        inbox.restore()
        waker.close()


def test_retrying_stops_at_once_when_told_to_give_up() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    slept: list[float] = []
    client = CoordinatorClient(f"http://127.0.0.1:{port}", "t", sleep=slept.append)
    policy = RetryPolicy(max_retry_s=300, give_up=lambda: True)  # a stop signal is pending
    with pytest.raises(CoordinatorUnreachable, match="retrying given up"):
        client.request("GET", "/jobs/1", retry=policy)
    assert slept == []
    client.close()


@pytest.mark.parametrize(
    ("answer", "start_unreported", "match_lease_s", "job_lease_s", "expected_s"),
    [
        (None, False, 180.0, 390.0, 180.0),  # matched, payload not started: the match's
        (RunningAnswer.IN_HEARTBEAT, True, 180.0, 390.0, 180.0),  # start not ridden yet
        (RunningAnswer.IN_HEARTBEAT, False, 180.0, 390.0, 390.0),  # Running there now
        (RunningAnswer.CONFIRMED, False, 180.0, 390.0, 390.0),
        (None, False, 600.0, 390.0, 390.0),  # the shorter of the two while Matched
        (None, False, 0.0, 390.0, 390.0),  # an older coordinator: no lease in the match
        (None, False, 180.0, 0.0, 180.0),  # no job_lease_s at registration
        (RunningAnswer.CONFIRMED, False, 180.0, 0.0, 0.0),  # nothing said: never fenced
    ],
)
def test_a_jobs_lease_is_the_matchs_until_its_start_is_confirmed(
    answer: Optional[RunningAnswer],
    start_unreported: bool,
    match_lease_s: float,
    job_lease_s: float,
    expected_s: float,
) -> None:
    """What the pilot's fencing (``Agent._fence``) waits for: a job the coordinator still
    has Matched goes back to Waiting after the match timeout, sooner than a Running one."""
    job = RunningJob(
        assignment=JobAssignment(job_id=1, executable="true", lease_s=match_lease_s),
        run=None,  # type: ignore[arg-type]  # never started: only the lease is asked
        match_s=0.0,
        started_at=100.0,
        next_heartbeat_at=100.0,
        running_answer=answer,
        start_unreported=start_unreported,
    )
    assert job.lease_s(job_lease_s) == expected_s
