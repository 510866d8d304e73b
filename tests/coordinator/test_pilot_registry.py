"""The pilot registry against a real coordinator: what ``GET /pilots`` shows, to whom, and
``gridpilot pilots`` / ``gridpilot pilot-logs``."""

from __future__ import annotations

import json
import time

import requests

from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot, User, gridpilot

DISK_FAILED = {
    "name": "disk",
    "status": "fail",
    "message": "12 MB free in /scratch, 2048 MB needed",
    "facts": {"disk_free_mb": 12},
    "fatal": True,
}
REGISTRATION = {
    "site": "LCG.CERN.ch",
    "ce": "ce01.cern.ch",
    "batch_system": "slurm",
    "batch_job_id": "4242",
    "cores": 8,
    "memory_mb": 16000,
    "platform": "x86_64-el9",
    "tags": ["GPU", "8Processors"],
    "facts": {"cpu_model": "EPYC"},
    "checks": [DISK_FAILED],
    "accepting_work": False,
    "refuse_reason": "fatal check disk failed: 12 MB free in /scratch, 2048 MB needed",
}


def pilots_seen_by(user: User) -> dict[str, dict]:
    reply = user.get("/pilots")
    assert reply.status_code == 200, reply.text
    return {item["pilot_id"]: item for item in reply.json()["pilots"]}


def test_registry_shows_the_node_checks_and_why_a_pilot_refuses_work(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    pilot = FakePilot(shared_coordinator, vo, hostname="wn-17.cern.ch", **REGISTRATION)
    item = pilots_seen_by(User(shared_coordinator, vo))[pilot.pilot_id]
    assert item["hostname"] == "wn-17.cern.ch"
    assert (item["site"], item["ce"]) == ("LCG.CERN.ch", "ce01.cern.ch")
    assert (item["batch_system"], item["batch_job_id"]) == ("slurm", "4242")
    assert (item["pilot_version"], item["vo"], item["subject"]) == ("0.1.0", vo, "factory")
    assert item["accepting_work"] is False
    assert item["refuse_reason"].startswith("fatal check disk failed")
    (check,) = item["checks"]
    assert (check["name"], check["status"], check["fatal"]) == ("disk", "fail", True)
    assert item["tags"] == ["8Processors", "GPU"] and item["facts"] == {"cpu_model": "EPYC"}
    assert item["registered_at"] == item["last_seen"]


def test_jobs_a_pilot_ran_stay_listed_after_they_are_rescheduled_away(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    user = User(coord, vo)
    first, second = FakePilot(coord, vo), FakePilot(coord, vo, subject="factory-2")
    (job_id,) = user.submit()
    first.match()
    first.report(job_id, "Running")
    first.report(job_id, "Failed", exit_code=1)
    assert user.post(f"/jobs/{job_id}/reschedule").status_code == 200
    assert second.match() == [job_id]
    seen = pilots_seen_by(user)
    assert seen[first.pilot_id]["job_ids"] == [job_id]
    assert seen[second.pilot_id]["job_ids"] == [job_id]
    # last_seen moves with the pilot's calls.
    before = seen[second.pilot_id]["last_seen"]
    time.sleep(0.01)
    second.heartbeat(job_id)
    assert user.get(f"/pilots/{second.pilot_id}").json()["last_seen"] > before


def test_who_sees_which_pilots(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    pilot = FakePilot(coord, vo)
    alice, bob = User(coord, vo), User(coord, vo, subject="bob")
    (alices_job,) = alice.submit()
    assert pilot.match() == [alices_job]
    assert pilots_seen_by(alice)[pilot.pilot_id]["job_ids"] == [alices_job]
    assert pilots_seen_by(bob)[pilot.pilot_id]["job_ids"] == []  # not bob's job
    outsider = User(coord, f"{vo}-other")
    assert pilot.pilot_id not in pilots_seen_by(outsider)
    assert outsider.get(f"/pilots/{pilot.pilot_id}").status_code == 404
    admin = User(coord, "ops-vo", subject="ops", role="admin")
    assert pilots_seen_by(admin)[pilot.pilot_id]["job_ids"] == [alices_job]
    as_pilot = requests.get(coord.api("/pilots"), headers=pilot.headers())
    assert pilot.pilot_id in {item["pilot_id"] for item in as_pilot.json()["pilots"]}
    assert User(coord, vo).get("/pilots/no-such-pilot").status_code == 404
    assert requests.get(coord.api("/pilots")).status_code == 401


def test_cli_pilots_and_pilot_logs(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    pilot = FakePilot(coord, vo, hostname="wn-99", **REGISTRATION)
    log = b"2026-01-01 pilot starting\n2026-01-01 disk check failed\n"
    reply = requests.put(
        coord.api(f"/pilots/{pilot.pilot_id}/log"), data=log, headers=pilot.headers()
    )
    assert reply.status_code == 200, reply.text
    admin_token = coord.token(role="admin", subject="ops", vo=vo)
    table = gridpilot(coord, admin_token, "pilots")
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith(pilot.pilot_id))
    assert "wn-99" in row and "slurm:4242" in row and " no " in row
    assert "refuses work: fatal check disk failed" in table.stdout
    as_json = json.loads(gridpilot(coord, admin_token, "pilots", "--json").stdout)
    assert pilot.pilot_id in {item["pilot_id"] for item in as_json["pilots"]}
    logs = gridpilot(coord, admin_token, "pilot-logs", pilot.pilot_id)
    assert (logs.returncode, logs.stdout) == (0, log.decode())
    missing = gridpilot(coord, admin_token, "pilot-logs", "0000")
    assert missing.returncode == 1 and "no pilot 0000" in missing.stderr
