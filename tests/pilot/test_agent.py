"""The pilot's loop itself: an ``Agent`` in this process against a real coordinator.

Like rq's ``SimpleWorker``, the loop runs in the test's own process (in a thread), so each
stop condition is a few seconds, not a pilot process per case. The payloads are real
processes through the real plain runtime (``/bin/true``, ``/bin/false``, ``sleep``: a few
milliseconds each), so nothing of the wrapper is stood in for. The only fakes are at the
edge of the machine: a wall clock the test moves, and the SIGTERM the test raises.
"""

from __future__ import annotations

import datetime
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional, Union

import pytest

from checks.registry import builtin_checks
from client.api import UserClient
from client.connection import Connection
from pilot.agent import Agent, PilotExit
from pilot.client import CoordinatorClient, RetryPolicy
from pilot.config import load_config
from pilot.errors import BlackHoleStop, FatalCheckFailed
from protocol import JobInfo, JobStatus, SubmitRequest
from tests.conftest import RunningCoordinator, launch_coordinator

RUN_TIMEOUT_S = 30.0
KEPT_CHECKS = ("python", "cores", "memory")
"""The checks the agent runs here: enough for its capacity, quick to run."""


class WallClock:
    """The epoch clock at the edge of the machine, moved by the test."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s


class Pilot:
    """An ``Agent`` running in a thread, and what it returned or raised."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.result: Union[PilotExit, BaseException, None] = None
        self._thread = threading.Thread(target=self._run, name="agent", daemon=True)

    def _run(self) -> None:
        try:
            self.result = self.agent.run()
        except BaseException as exc:  # the test asserts on it
            self.result = exc

    def start(self) -> Pilot:
        self._thread.start()
        return self

    def finish(self, timeout_s: float = RUN_TIMEOUT_S) -> Union[PilotExit, BaseException, None]:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"the agent did not stop within {timeout_s} s"
        self.agent.close()  # as ``gridpilot pilot`` does (in the main thread: signals)
        return self.result


class World:
    """A coordinator, a user submitting jobs to it, and pilots built against it."""

    def __init__(self, coordinator: RunningCoordinator, tmp_path: Path) -> None:
        self.coordinator = coordinator
        self.tmp_path = tmp_path
        user_token = coordinator.token(vo="vo-agent")
        self.user = UserClient(Connection(coordinator.url, user_token, "test", True, 30.0, 2.0))
        self.clients: list[CoordinatorClient] = []

    def submit(self, executable: str, arguments: str = "", count: int = 1) -> list[int]:
        jdl = f'Executable = "{executable}"; Arguments = "{arguments}";'
        ids: list[int] = []
        for _ in range(count):
            ids += self.user.submit(SubmitRequest(description=jdl)).job_ids
        return ids

    def submit_gated(self, name: str) -> tuple[list[int], Path]:
        """A job whose payload runs until the test creates the returned gate file.

        A payload of a fixed second had to outlast its Running heartbeat (half a second
        after its start), the test's poll and the test's next step (a stop, a clock moved,
        the coordinator stopped); on a loaded machine it sometimes did not, and the pilot
        had already reported it, or matched the job meant to stay Waiting."""
        gate = self.tmp_path / f"gate-{name}"
        return self.submit("/bin/sh", f"-c 'while [ ! -e {gate} ]; do sleep 0.05; done'"), gate

    def wait_not_accepting(self, agent: Agent, timeout_s: float = 15.0) -> None:
        """Until the coordinator hears that the pilot takes no more work (it stops)."""
        deadline = time.monotonic() + timeout_s
        while True:
            [info] = [p for p in self.user.pilots() if p.pilot_id == agent.pilot_id]
            if not info.accepting_work:
                return
            assert time.monotonic() < deadline, f"pilot {agent.pilot_id} never stopped"
            time.sleep(0.05)

    def jobs(self, ids: list[int]) -> list[JobInfo]:
        return self.user.jobs(ids)

    def statuses(self, ids: list[int]) -> list[JobStatus]:
        return [job.status for job in self.jobs(ids)]

    def wait_for(self, ids: list[int], status: JobStatus, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.statuses(ids) != [status] * len(ids):
            assert time.monotonic() < deadline, (
                f"jobs {ids}: {self.jobs(ids)}, never all {status.value}"
            )
            time.sleep(0.05)

    def agent(
        self,
        wall_clock: Optional[Callable[[], float]] = None,
        config_file: Optional[Path] = None,
        **settings: Any,
    ) -> Agent:
        values: dict[str, Any] = {
            "url": self.coordinator.url,
            "token": self.coordinator.token(role="pilot", subject="factory", vo="vo-agent"),
            "workdir": str(self.tmp_path / "pilot"),
            "cores": 1,
            "idle_timeout_s": 1.0,
            "poll_interval_s": 0.2,
            "max_retry_s": 5.0,
            "spool_retry_interval_s": 0.2,
            "upload_log": False,
            "disabled_checks": [s.name for s in builtin_checks() if s.name not in KEPT_CHECKS],
            **settings,
        }
        config = load_config(values, {}, config_file)
        client = CoordinatorClient(
            config.url, config.token, retry=RetryPolicy(max_retry_s=config.max_retry_s)
        )
        agent = Agent(config, client, env={}, wall_clock=wall_clock or time.time)
        self.clients.append(client)
        return agent

    def close(self) -> None:
        for client in [*self.clients, self.user]:
            client.close()


@pytest.fixture
def world(start_coordinator: Callable[..., RunningCoordinator], tmp_path: Path) -> Iterator[World]:
    coordinator = start_coordinator(match_retry_after_s=0.2, heartbeat_interval_s=1)
    built = World(coordinator, tmp_path)
    yield built
    built.close()


def test_runs_every_job_then_exits_when_idle(world: World) -> None:
    ids = world.submit("/bin/echo", "hello", count=3)
    started = time.monotonic()
    agent = world.agent()
    assert Pilot(agent).start().finish() is PilotExit.IDLE
    assert world.statuses(ids) == [JobStatus.DONE] * 3
    assert agent.jobs_done == 3
    assert 1.0 <= time.monotonic() - started < 15.0  # idle_timeout_s after the last job


def test_a_freed_core_takes_its_next_job_while_the_last_report_is_on_its_way(
    world: World,
) -> None:
    """One core, two jobs. The first writes 8 MB to stdout and ends at once: no log thread
    was started for it, its job thread ships the 8 MB (32 requests) before the final
    report, and the core is free meanwhile, so the second job is matched before the first
    is Done at the coordinator; the whole log arrives all the same."""
    size = 8_000_000
    first = world.submit("/usr/bin/head", f"-c {size} /dev/zero")
    second = world.submit("/bin/true")
    assert Pilot(world.agent()).start().finish() is PilotExit.IDLE
    assert world.statuses(first + second) == [JobStatus.DONE] * 2

    def when(job_id: int, status: JobStatus) -> str:
        return next(e.at for e in world.user.history(job_id) if e.status is status)

    assert when(second[0], JobStatus.MATCHED) < when(first[0], JobStatus.DONE)
    log = world.user.read_log(first[0], "stdout", 0, 1)
    assert log.size_bytes == size


def test_a_node_failing_every_job_fast_stops_taking_work(world: World) -> None:
    failing = world.submit("/bin/false", count=4)
    # One owner's jobs only: a node failing them all is told from one user's broken jobs
    # by their owners (tests/pilot/test_guard_and_node.py); here every failure counts.
    agent = world.agent(black_hole_failures=2, black_hole_window_s=60, black_hole_owners=1)
    result = Pilot(agent).start().finish()
    assert isinstance(result, BlackHoleStop)
    statuses = world.statuses(failing)
    assert statuses.count(JobStatus.FAILED) == 2
    assert statuses.count(JobStatus.WAITING) == 2, "the black hole took more jobs"


def test_too_little_time_left_stops_matching_and_lets_the_running_job_finish(
    world: World,
) -> None:
    clock = WallClock()
    (running, gate), waiting = world.submit_gated("running"), world.submit("/bin/true")
    agent = world.agent(wall_clock=clock, time_left_s=1000, min_time_left_s=300)
    pilot = Pilot(agent).start()
    world.wait_for(running, JobStatus.RUNNING)
    clock.offset_s = 800.0  # 200 s left in the slot: below min_time_left_s
    world.wait_not_accepting(agent)
    gate.touch()
    assert pilot.finish() is PilotExit.NO_TIME_LEFT
    assert world.statuses(running) == [JobStatus.DONE]
    assert world.statuses(waiting) == [JobStatus.WAITING]


def _stop_with_sigterm(
    world: World, running: list[int], signals: int, gate: Optional[Path] = None
) -> None:
    """A pilot runs ``running``; then SIGTERM arrives ``signals`` times, as from the batch
    system (the handlers are installed as ``gridpilot pilot`` installs them); ``gate``
    ends a gated payload once the pilot has stopped taking work."""
    agent = world.agent()
    agent.signals.install()
    try:
        pilot = Pilot(agent).start()
        world.wait_for(running, JobStatus.RUNNING)
        for _ in range(signals):
            signal.raise_signal(signal.SIGTERM)
        if gate is not None:
            world.wait_not_accepting(agent)
            gate.touch()
        assert pilot.finish() is PilotExit.STOPPED
    finally:
        agent.signals.restore()  # again, harmless, in case the pilot never finished


def test_a_first_sigterm_drains_and_a_second_kills(world: World) -> None:
    (drained, gate), never = world.submit_gated("drained"), world.submit("/bin/true")
    _stop_with_sigterm(world, drained, signals=1, gate=gate)
    assert world.statuses(drained) == [JobStatus.DONE]
    assert world.statuses(never) == [JobStatus.WAITING]

    killed = world.submit("/bin/sleep", "60")
    _stop_with_sigterm(world, killed, signals=2)
    [job] = world.jobs(killed)
    assert job.status is JobStatus.KILLED
    assert "SIGTERM" in job.minor_status


def _restart(world: World) -> RunningCoordinator:
    """The coordinator again, on its port and data dir; the fixture checks its log."""
    port = int(world.coordinator.url.rsplit(":", 1)[1])
    back = launch_coordinator(world.coordinator.data_dir, port=port)
    world.coordinator.process = back.process
    return back


def test_a_report_kept_while_the_coordinator_was_down_is_sent_when_it_is_back(
    world: World,
) -> None:
    coordinator = world.coordinator
    # The payload ends once the coordinator is down (a second's payload sometimes ended
    # before, was reported at once and never kept: "the final report was never kept").
    ids, gate = world.submit_gated("kept")
    # Idle for longer than the outage: the loop itself must resend, not the exit.
    agent = world.agent(report_retry_s=0, max_retry_s=30, idle_timeout_s=5)
    pilot = Pilot(agent).start()
    world.wait_for(ids, JobStatus.RUNNING)
    coordinator.process.terminate()
    coordinator.process.wait(timeout=10)
    gate.touch()
    spool = world.tmp_path / "pilot" / "spool"
    deadline = time.monotonic() + 15
    while not list(spool.glob("job_*.json")):
        assert time.monotonic() < deadline, "the final report was never kept"
        time.sleep(0.05)
    _restart(world)
    world.wait_for(ids, JobStatus.DONE)
    assert pilot.finish() is PilotExit.IDLE
    assert not list(spool.glob("job_*.json"))


def test_time_the_coordinator_could_not_be_asked_is_not_idle_time(world: World) -> None:
    """A pilot's coordinator is down for longer than its idle_timeout_s: once it answers, the
    pilot still waits for work for its idle time (an outage says nothing of the queue; a
    restarted coordinator must not find every idle pilot of a site gone at its first
    answer)."""
    agent = world.agent(idle_timeout_s=3, max_retry_s=60)
    pilot = Pilot(agent).start()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not agent.pilot_id:
        assert time.monotonic() < deadline, "the pilot never registered"
        time.sleep(0.05)
    world.coordinator.process.terminate()
    world.coordinator.process.wait(timeout=10)
    time.sleep(4)  # longer than idle_timeout_s
    back_at = datetime.datetime.now(datetime.timezone.utc)
    _restart(world)
    while _last_seen(world, agent.pilot_id) < back_at:  # it asked again, and heard "no work"
        assert time.monotonic() < deadline + 30, "the pilot never asked the coordinator again"
        time.sleep(0.05)
    ids = world.submit("/bin/true")
    world.wait_for(ids, JobStatus.DONE)
    assert pilot.finish() is PilotExit.IDLE


def _last_seen(world: World, pilot_id: str) -> datetime.datetime:
    [info] = [p for p in world.user.pilots() if p.pilot_id == pilot_id]
    return datetime.datetime.fromisoformat(info.last_seen)


SCRATCH_CHECK = """\
from pathlib import Path

from checks import CheckContext, CheckResult, Status, check


@check("scratch", fatal=True, interval_s=0.2)
def scratch(ctx: CheckContext) -> CheckResult:
    if Path(ctx.options["broken_flag"]).exists():
        return CheckResult(Status.FAIL, "scratch unmounted")
    return CheckResult(Status.OK, "scratch mounted")
"""


def test_a_fatal_check_failing_on_a_rerun_drains_and_stops(world: World, tmp_path: Path) -> None:
    plugins, flag = tmp_path / "site-checks", tmp_path / "broken"
    plugins.mkdir()
    (plugins / "site_checks.py").write_text(SCRATCH_CHECK)
    config_file = tmp_path / "pilot.yaml"
    config_file.write_text(
        f"checks:\n  search_path: [{plugins}]\n  refs: {{scratch: site_checks:scratch}}\n"
        f"  settings: {{scratch: {{fatal: true, interval_s: 0.2}}}}\n"
        f"  options: {{scratch: {{broken_flag: {flag}}}}}\n"
    )
    (running, gate), waiting = world.submit_gated("running"), world.submit("/bin/true")
    agent = world.agent(config_file=config_file)
    pilot = Pilot(agent).start()
    world.wait_for(running, JobStatus.RUNNING)
    flag.touch()
    world.wait_not_accepting(agent)
    gate.touch()
    result = pilot.finish()
    assert isinstance(result, FatalCheckFailed)
    assert "scratch unmounted" in str(result)
    assert world.statuses(running) == [JobStatus.DONE]
    assert world.statuses(waiting) == [JobStatus.WAITING]
