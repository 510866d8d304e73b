"""Poison input: numbers that overflow, lone surrogates, NUL characters and out-of-range
pilot facts are refused at the door with a 400 naming the attribute or field; and a row
stored before these checks existed never makes a read (job, job list, match) fail.

The coordinator fixtures fail a test module whose coordinator logged an unhandled error,
so every refusal here is also proven not to be a 500 in disguise."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot, User

HUGE = 10**30


def submit_text(
    coord: RunningCoordinator, token: str, text: str, fmt: str = "jdl"
) -> requests.Response:
    return requests.post(
        coord.api("/jobs"),
        json={"description": text, "format": fmt},
        headers=coord.headers(token),
    )


def post_raw(coord: RunningCoordinator, path: str, body: str, headers: dict[str, str]) -> Any:
    """A JSON body written by hand: Python's JSON writer cannot produce every poison."""
    headers = {**headers, "Content-Type": "application/json"}
    return requests.post(coord.api(path), data=body.encode(), headers=headers)


NUMERIC_ATTRIBUTES = [
    "NumberOfProcessors",
    "MinNumberOfProcessors",
    "MaxNumberOfProcessors",
    "MaxRAM",
    "MinRAM",
    "CPUTime",
    "WallTime",
    "Priority",
]


@pytest.mark.parametrize("attribute", NUMERIC_ATTRIBUTES)
@pytest.mark.parametrize("fmt", ["jdl", "json", "yaml"])
def test_overflowing_numbers_get_a_400_naming_the_attribute(
    shared_coordinator: RunningCoordinator, vo: str, attribute: str, fmt: str
) -> None:
    coord = shared_coordinator
    token = coord.token(vo=vo)
    texts = {
        "jdl": f'Executable = "/bin/true"; {attribute} = {HUGE};',
        "json": json.dumps({"Executable": "/bin/true", attribute: HUGE}),
        "yaml": f"Executable: /bin/true\n{attribute}: {HUGE}\n",
    }
    reply = submit_text(coord, token, texts[fmt], fmt)
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["code"] == "invalid_description"
    assert body["details"]["attribute"] == attribute
    assert body["message"].startswith(f"{attribute} must be between")
    assert User(coord, vo).get("/jobs").json()["jobs"] == []


@pytest.mark.parametrize(
    ("attribute", "value", "accepted"),
    [
        ("NumberOfProcessors", 4096, True),
        ("NumberOfProcessors", 4097, False),
        ("NumberOfProcessors", 0, False),
        ("MaxRAM", 2**24, True),
        ("MaxRAM", 2**24 + 1, False),
        ("MaxRAM", -1, False),
        ("WallTime", 2**31 - 1, True),
        ("WallTime", 2**31, False),
        ("CPUTime", -5, False),
    ],
)
def test_range_limits_are_inclusive(
    shared_coordinator: RunningCoordinator, vo: str, attribute: str, value: int, accepted: bool
) -> None:
    coord = shared_coordinator
    text = json.dumps({"Executable": "/bin/true", attribute: value})
    reply = submit_text(coord, coord.token(vo=vo), text, "json")
    assert reply.status_code == (201 if accepted else 400), reply.text


def test_a_json_integer_too_long_to_read_is_a_400(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    text = '{"Executable": "/bin/true", "MaxRAM": ' + "9" * 5000 + "}"
    reply = submit_text(coord, coord.token(vo=vo), text, "json")
    assert (reply.status_code, reply.json()["code"]) == (400, "invalid_description")


# A lone surrogate reaches the coordinator three ways: as a JSON escape inside a JSON
# description, as a YAML escape, or as a JSON escape in the request body itself (which
# puts the raw character into JDL text).
SURROGATES = {
    "json": ("json", r"{\"Executable\": \"/bin/\\ud800true\"}"),
    "yaml": ("yaml", r"Executable: \"/bin/\\ud800true\""),
    "jdl": ("jdl", r"Executable = \"/bin/\ud800true\";"),
    "nul-in-jdl": ("jdl", r"Executable = \"/bin/\u0000true\";"),
    "nul-in-yaml": ("yaml", r"Executable: \"/bin/\\0true\""),
}


@pytest.mark.parametrize("case", sorted(SURROGATES))
def test_lone_surrogates_and_nul_are_refused(
    shared_coordinator: RunningCoordinator, vo: str, case: str
) -> None:
    coord = shared_coordinator
    fmt, escaped = SURROGATES[case]
    body = '{"description": "' + escaped + '", "format": "' + fmt + '"}'
    reply = post_raw(coord, "/jobs", body, coord.headers(coord.token(vo=vo)))
    assert reply.status_code == 400, reply.text
    error = reply.json()
    assert error["code"] == "invalid_description"
    if fmt == "jdl":  # the character is in the text: its line and column are known
        assert (error["details"]["line"], error["details"]["column"]) == (1, 20)
    else:
        assert error["details"]["attribute"] == "Executable"
    assert User(coord, vo).get("/jobs").json()["jobs"] == []


REG = '"pilot_version": "1", '
PILOT_POISON = [
    ("/pilots", REG + '"hostname": "wn", "cores": -1', "PilotRegistration.cores"),
    ("/pilots", REG + f'"hostname": "wn", "cores": {HUGE}', "PilotRegistration.cores"),
    ("/pilots", REG + '"hostname": "wn", "memory_mb": -5', "PilotRegistration.memory_mb"),
    ("/pilots", REG + '"hostname": "wn", "time_left_s": -1', "PilotRegistration.time_left_s"),
    ("/pilots", REG + '"hostname": "wn\\ud800"', "PilotRegistration.hostname"),
    ("/pilots", REG + '"hostname": "' + "w" * 300 + '"', "PilotRegistration.hostname"),
    ("/pilots", REG + '"hostname": "wn", "facts": {"load": NaN}', "PilotRegistration.facts.load"),
    ("/pilots", REG + '"hostname": "wn", "tags": ["\\u0000"]', "PilotRegistration.tags[0]"),
    ("{match}", '"n": 11, "cores_free": -1', "MatchRequest.cores_free"),
    ("{match}", f'"n": {HUGE}', "MatchRequest.n"),
    ("{match}", f'"n": 1, "memory_free_mb": {HUGE}', "MatchRequest.memory_free_mb"),
    ("{heartbeat}", '"jobs": [{"job_id": 1, "heartbeat": {"cpu_s": Infinity}}]', "cpu_s"),
    ("{heartbeat}", f'"jobs": [{{"job_id": 1, "heartbeat": {{"rss_bytes": {HUGE}}}}}]', "bytes"),
    ("{state}", '"accepting_work": false, "reason": "\\udfff"', "PilotStateUpdate.reason"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "members", "field"),
    PILOT_POISON,
    ids=[f"{number}-{field}" for number, (_, _, field) in enumerate(PILOT_POISON)],
)
def test_pilot_facts_are_checked_as_strictly_as_job_descriptions(
    shared_coordinator: RunningCoordinator, vo: str, path: str, members: str, field: str
) -> None:
    coord = shared_coordinator
    pilot = FakePilot(coord, vo)
    where = {
        "match": f"/pilots/{pilot.pilot_id}/match",
        "heartbeat": f"/pilots/{pilot.pilot_id}/heartbeat",
        "state": f"/pilots/{pilot.pilot_id}/state",
    }
    reply = post_raw(coord, path.format(**where), "{" + members + "}", pilot.headers())
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == "bad_request"
    assert reply.json()["details"]["field"].endswith(field)
    listed = requests.get(coord.api("/pilots"), headers=pilot.headers()).json()["pilots"]
    assert [p["pilot_id"] for p in listed] == [pilot.pilot_id]  # nothing else registered


def test_a_status_report_with_poison_changes_nothing(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    user, pilot = User(coord, vo), FakePilot(coord, vo)
    [job_id] = user.submit()
    assert pilot.match() == [job_id]
    for update in (
        f'{{"status": "Running", "exit_code": {HUGE}}}',
        '{"status": "Running", "minor_status": "\\ud800"}',
        '{"status": "Running", "source": "' + "s" * 300 + '"}',
        '{"status": "Running", "cpu_s": -1.0}',
    ):
        reply = post_raw(coord, f"/jobs/{job_id}/status", update, pilot.job_headers())
        assert (reply.status_code, reply.json()["code"]) == (400, "bad_request"), update
    assert user.job(job_id)["status"] == "Matched"


def test_an_oversized_registration_is_refused(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    token = coord.token(role="pilot", subject="factory", vo=vo)
    facts = {f"fact{i}": "x" * 1000 for i in range(300)}
    reg = {"hostname": "wn", "pilot_version": "1", "facts": facts}
    reply = requests.post(coord.api("/pilots"), json=reg, headers=coord.headers(token))
    assert (reply.status_code, reply.json()["code"]) == (413, "too_large")


# -- rows stored before these checks existed ---------------------------------------------


def _store_description(coord: RunningCoordinator, job_id: int, raw_json: str) -> None:
    """Overwrite a job's stored description as an older coordinator could have stored it."""
    coord.sql("UPDATE jobs SET description = :raw WHERE job_id = :id", raw=raw_json, id=job_id)


def test_a_poisoned_stored_row_breaks_no_read_and_strands_no_other_job(
    coordinator: RunningCoordinator,
) -> None:
    coord = coordinator
    user = User(coord, "vo1")
    admin = User(coord, "vo1", subject="ops", role="admin")
    job_ids = user.submit(Parameters=11)
    garbled, unrunnable, not_json = job_ids[3], job_ids[7], job_ids[9]
    # What an older coordinator stored from JSON escapes: lone surrogates and NaN ...
    _store_description(
        coord, garbled, r'{"Executable": "/bin/echo", "Arguments": "\ud800", "X": NaN}'
    )
    # ... a description today's limits refuse (its matching columns were stored as 1 core) ...
    _store_description(coord, unrunnable, f'{{"Executable": "/bin/echo", "MaxRAM": {HUGE}}}')
    # ... and a description that is not JSON at all.
    _store_description(coord, not_json, "{not json")

    shown = user.job(garbled)
    assert shown["description"]["Arguments"] == "\ufffd"
    assert shown["description"]["X"] is None
    assert user.job(not_json)["description"] == {}
    listed = admin.get("/jobs").json()["jobs"]
    assert sorted(job["job_id"] for job in listed) == sorted(job_ids)

    pilot = FakePilot(coord, "vo1")
    delivered = pilot.match(n=11)
    assert sorted(delivered) == sorted(set(job_ids) - {unrunnable, not_json})
    for job_id in (unrunnable, not_json):
        info = user.job(job_id)
        assert info["status"] == "Failed"
        assert info["minor_status"].startswith("Invalid job description: ")
    assert "MaxRAM must be between" in user.job(unrunnable)["minor_status"]
    assert pilot.match(n=11) == []  # nothing left behind, Matched and undelivered
    statuses = {job["job_id"]: job["status"] for job in admin.get("/jobs").json()["jobs"]}
    assert sorted(j for j, s in statuses.items() if s == "Matched") == sorted(delivered)


def test_a_poisoned_pilot_row_breaks_no_listing(coordinator: RunningCoordinator) -> None:
    coord = coordinator
    pilot, other = FakePilot(coord, "vo1"), FakePilot(coord, "vo1")
    coord.sql(
        "UPDATE pilots SET facts = :facts, checks = :checks, tags = :tags WHERE pilot_id = :id",
        facts=r'{"cpu": "\udc80", "load": NaN}',
        checks='[{"name": "x"}, 7]',
        tags="{broken",
        id=pilot.pilot_id,
    )
    user = User(coord, "vo1")
    listed = {p["pilot_id"]: p for p in user.get("/pilots").json()["pilots"]}
    assert set(listed) == {pilot.pilot_id, other.pilot_id}
    shown = user.get(f"/pilots/{pilot.pilot_id}").json()
    assert shown["facts"] == {"cpu": "\ufffd", "load": None}
    assert (shown["checks"], shown["tags"]) == ([], [])
