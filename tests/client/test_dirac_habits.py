"""DIRAC users' habits, against a real coordinator: many ids, ``-f FILE``, ``-g JOBGROUP``,
``JobID = [4, 5, 6]``, "Killed job 3", wildcards in InputSandbox, get-jdl / parameters /
attributes, and a multi-file submit that checks every file first."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Callable

import pytest
import requests

from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot, User


class Shell:
    def __init__(self, coord: RunningCoordinator, token: str, home: Path) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")}
        self.env.update(GRIDPILOT_URL=coord.url, GRIDPILOT_TOKEN=token)
        self.env["GRIDPILOT_SESSION_FILE"] = str(home / "no-session.json")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "client", *args],
            cwd=self.home, env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def write(self, name: str, text: str) -> Path:
        path = self.home / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


@pytest.fixture
def user(shared_coordinator: RunningCoordinator, vo: str) -> User:
    return User(shared_coordinator, vo)


@pytest.fixture
def shell(shared_coordinator: RunningCoordinator, user: User, tmp_path: Path) -> Shell:
    return Shell(shared_coordinator, user.token, tmp_path)


def test_submit_prints_as_dirac_and_appends_ids_to_a_file(shell: Shell) -> None:
    shell.write("one.jdl", 'Executable = "/bin/true"; JobGroup = "g1";')
    shell.write("bulk.jdl", 'Executable = "/bin/echo"; Arguments = "%s"; Parameters = 3;')
    out = shell.ok("submit", "one.jdl", "bulk.jdl", "-f", "ids.txt")
    first, bulk = out.splitlines()
    (single,) = [int(first.removeprefix("JobID = "))]
    assert bulk == f"JobID = [{single + 1}, {single + 2}, {single + 3}]"
    assert (shell.home / "ids.txt").read_text().split() == [str(single + n) for n in range(4)]
    as_json = shell.ok("submit", "--json", "bulk.jdl").splitlines()
    assert [json.loads(line)["file"] for line in as_json] == ["bulk.jdl"] * 3


def test_job_commands_take_many_ids_a_file_and_a_group(shell: Shell, user: User) -> None:
    grouped = user.submit(JobGroup="analysis") + user.submit(JobGroup="analysis")
    other = user.submit()
    shell.write("ids.txt", f"{other[0]}\n")
    named = shell.ok("status", f"{grouped[0]},{grouped[1]}", "-f", "ids.txt").splitlines()
    assert [line.split()[0] for line in named] == [f"JobID={i}" for i in [*grouped, *other]]
    by_group = shell.ok("status", "-g", "analysis").splitlines()
    assert [line.split()[0] for line in by_group] == [f"JobID={i}" for i in grouped]
    history = shell.ok("logging-info", *map(str, grouped))
    assert history.count("JobID = ") == 2 and history.count("Received") == 2
    # An unknown job is reported, the others are done, and the exit code says so.
    killed = shell.run("kill", str(grouped[0]), "999999", str(grouped[1]))
    assert killed.returncode == 1
    assert killed.stdout == f"Killed job {grouped[0]}\nKilled job {grouped[1]}\n"
    assert killed.stderr == "gridpilot: no job 999999\n"
    deleted = shell.ok("delete", "-g", "analysis")
    assert deleted == f"Deleted job {grouped[0]}\nDeleted job {grouped[1]}\n"


def test_one_kill_rule_as_dirac_has(
    shared_coordinator: RunningCoordinator, vo: str, user: User, shell: Shell
) -> None:
    """A job that is over is left as it is, whatever it ended as; that is not an error."""
    done, failed = user.submit(), user.submit()
    pilot = FakePilot(shared_coordinator, vo)
    assert sorted(pilot.match(n=2)) == sorted(done + failed)
    for job_id, status in ((done[0], "Done"), (failed[0], "Failed")):
        pilot.report(job_id, "Running")
        pilot.report(job_id, status, exit_code=0 if status == "Done" else 1)
    killed = user.submit()
    shell.ok("kill", str(killed[0]))
    result = shell.run("kill", str(done[0]), str(failed[0]), str(killed[0]))
    assert result.returncode == 0
    assert result.stdout == f"Killed job {killed[0]}\n"
    assert result.stderr.splitlines() == [
        f"gridpilot: job {done[0]} is already Done: not killed",
        f"gridpilot: job {failed[0]} is already Failed: not killed",
    ]
    assert user.job(done[0])["status"] == "Done"


def test_get_jdl_parameters_and_attributes(
    shared_coordinator: RunningCoordinator, vo: str, user: User, shell: Shell
) -> None:
    (job_id,) = user.submit(JobName="fit", JobGroup="g7")
    pilot = FakePilot(shared_coordinator, vo)
    assert pilot.match() == [job_id]
    pilot.report(job_id, "Running")
    pilot.report(job_id, "Done", exit_code=0, cpu_s=1.5, timings_s={"payload": 2.0})
    jdl = shell.ok("get-jdl", str(job_id))
    assert jdl.startswith("[\n") and 'Executable = "/bin/echo";' in jdl
    assert 'Owner = "alice";' in jdl
    parameters = [line.split(" : ") for line in shell.ok("parameters", str(job_id)).splitlines()]
    found = {name.strip(): value for name, value in parameters}
    assert found["ExitCode"] == "0" and found["TotalCPUTime(s)"] == "1.5"
    assert found["PilotReference"] == pilot.pilot_id
    attributes = json.loads(shell.ok("attributes", "--json", str(job_id)))
    assert attributes[0]["JobName"] == "fit" and attributes[0]["Status"] == "Done"
    assert attributes[0]["Site"] == "wn01"  # the pilot named no site: its host, not ANY


def test_input_sandbox_wildcards_are_expanded_at_submit(
    shared_coordinator: RunningCoordinator, vo: str, shell: Shell
) -> None:
    for name in ("a.txt", "b.txt", "c.dat"):
        shell.write(f"isb/{name}", name)
    shell.write("job.jdl", 'Executable = "x"; InputSandbox = {"isb/*.txt", "isb/c.dat"};')
    (line,) = shell.ok("submit", "job.jdl").splitlines()
    job_id = int(line.removeprefix("JobID = "))
    pilot = FakePilot(shared_coordinator, vo)
    reply = requests.post(
        shared_coordinator.api(f"/pilots/{pilot.pilot_id}/match"),
        json={"n": 1, "cores_free": 1},
        headers=pilot.headers(),
        timeout=10,
    )
    (assignment,) = reply.json()["jobs"]
    assert assignment["job_id"] == job_id
    (digest,) = assignment["input_sandboxes"]
    archive = requests.get(
        shared_coordinator.api(f"/sandboxes/{digest}"), headers=pilot.headers(), timeout=10
    )
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        assert sorted(tar.getnames()) == ["a.txt", "b.txt", "c.dat"]


def test_a_multi_file_submit_checks_every_file_first(shell: Shell, user: User) -> None:
    shell.write("a.jdl", 'Executable = "/bin/true"; JobGroup = "multi";')
    shell.write("b.jdl", 'JobName = "no executable"; JobGroup = "multi";')
    shell.write("c.jdl", '[ Executable = "/bin/true"; Arguments = "unclosed ]')
    result = shell.run("submit", "a.jdl", "b.jdl", "c.jdl")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "gridpilot: b.jdl: Executable is required",
        "gridpilot: c.jdl: line 1, column 41: unterminated string: '\"' is never closed",
        "gridpilot: nothing submitted: 2 of 3 file(s) with errors",
    ]
    assert user.get("/jobs", job_group="multi").json()["jobs"] == []


def test_the_owner_of_a_job_reads_the_log_of_the_pilot_that_ran_it(
    shared_coordinator: RunningCoordinator,
    vo: str,
    user: User,
    shell: Shell,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    pilot = FakePilot(shared_coordinator, vo)
    requests.put(
        shared_coordinator.api(f"/pilots/{pilot.pilot_id}/log"),
        params={"offset": 0},
        data=b"pilot started\n",
        headers={**pilot.headers(), "Content-Type": "application/octet-stream"},
        timeout=10,
    ).raise_for_status()
    stranger = Shell(
        shared_coordinator, User(shared_coordinator, vo, "bob").token, tmp_path_factory.mktemp("b")
    )
    assert (
        stranger.run("pilot-logs", pilot.pilot_id).stderr
        == f"gridpilot: no pilot {pilot.pilot_id}\n"
    )
    assert shell.run("pilot-logs", pilot.pilot_id).returncode == 1  # ran nothing of alice's yet
    user.submit()
    assert len(pilot.match()) == 1
    assert shell.ok("pilot-logs", pilot.pilot_id) == "pilot started\n"


def test_a_pilot_without_a_site_is_placed_at_the_default_site(
    start_coordinator: Callable[..., RunningCoordinator],
) -> None:
    coord = start_coordinator(default_site="LCG.Example.org")
    user = User(coord, "vo1")
    (job_id,) = user.submit()
    pilot = FakePilot(coord, "vo1")
    assert pilot.match() == [job_id]
    assert user.job(job_id)["site"] == "LCG.Example.org"
    named = FakePilot(coord, "vo1", site="LCG.Named.org")
    (second,) = user.submit()
    assert named.match() == [second]
    assert user.job(second)["site"] == "LCG.Named.org"
