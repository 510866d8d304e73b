"""``POST /api/v1/jobs/search`` and ``/jobs/summary`` against a real coordinator: DiracX's
request and reply shapes, every operator, sort, pages with a total, and who sees what."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from coordinator.store import rollup
from coordinator.store.database import Database
from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot, User


def search(user: User, body: dict[str, Any], **params: Any) -> requests.Response:
    return requests.post(
        user.coord.api("/jobs/search"), json=body, params=params, headers=user.headers()
    )


def summary(user: User, body: dict[str, Any]) -> requests.Response:
    return requests.post(user.coord.api("/jobs/summary"), json=body, headers=user.headers())


def ids(reply: requests.Response) -> list[int]:
    assert reply.status_code in (200, 206), reply.text
    return [row["JobID"] for row in reply.json()]


@pytest.fixture
def world(shared_coordinator: RunningCoordinator, vo: str) -> dict[str, Any]:
    """alice: a Done job and a Running one (group g2, at SITE-A), three Waiting (g1) named
    scan-1..3; bob (same VO) one Waiting; an alice of another VO one Waiting."""
    coord = shared_coordinator
    alice = User(coord, vo)
    pilot = FakePilot(coord, vo, site="SITE-A")
    ran = []
    for final in ("Done", "Running"):
        (job_id,) = alice.submit(JobGroup="g2", JobName=f"run-{final}")
        assert pilot.match() == [job_id]
        pilot.report(job_id, "Running")
        if final == "Done":
            pilot.report(job_id, "Done", exit_code=0)
        ran.append(job_id)
    waiting = [alice.submit(JobGroup="g1", JobName=f"scan-{i}")[0] for i in (1, 2, 3)]
    bob = User(coord, vo, subject="bob")
    other_vo = User(coord, f"{vo}-other")
    return {
        "alice": alice,
        "done": ran[0],
        "running": ran[1],
        "waiting": waiting,
        "bob_job": bob.submit()[0],
        "other_vo_job": other_vo.submit()[0],
        "admin": User(coord, vo, subject="ops", role="admin"),
        "pilot": pilot,
    }


def test_a_user_searches_only_their_own_jobs(world: dict[str, Any]) -> None:
    alice: User = world["alice"]
    mine = sorted([world["done"], world["running"], *world["waiting"]])
    assert sorted(ids(search(alice, {}))) == mine
    everyone = ids(search(world["admin"], {"search": [{"parameter": "JobID", "operator": "in",
                   "values": [*mine, world["bob_job"], world["other_vo_job"]]}]}))  # fmt: skip
    assert sorted(everyone) == sorted([*mine, world["bob_job"], world["other_vo_job"]])
    # Naming another owner's job or VO does not widen a user's view.
    for spec in (
        {"parameter": "Owner", "operator": "eq", "value": "bob"},
        {"parameter": "JobID", "operator": "eq", "value": world["other_vo_job"]},
    ):
        assert ids(search(alice, {"search": [spec]})) == []


def test_every_operator(world: dict[str, Any]) -> None:
    alice: User = world["alice"]
    waiting = world["waiting"]

    def found(*specs: dict[str, Any]) -> list[int]:
        return sorted(ids(search(alice, {"search": list(specs)})))

    assert found({"parameter": "Status", "operator": "eq", "value": "Waiting"}) == waiting
    assert found({"parameter": "Status", "operator": "neq", "value": "Waiting"}) == sorted(
        [world["done"], world["running"]]
    )
    assert found({"parameter": "Status", "operator": "in", "values": ["Done", "Running"]}) == (
        sorted([world["done"], world["running"]])
    )
    assert found({"parameter": "status", "operator": "not in", "values": ["Done", "Running"]}) == (
        waiting
    )
    assert found({"parameter": "JobName", "operator": "like", "value": "SCAN-%"}) == waiting
    assert found({"parameter": "JobName", "operator": "not like", "value": "scan-%"}) == sorted(
        [world["done"], world["running"]]
    )
    assert found({"parameter": "JobID", "operator": "gt", "value": waiting[0]}) == waiting[1:]
    assert found({"parameter": "JobID", "operator": "lt", "value": str(waiting[1])}) == sorted(
        [world["done"], world["running"], waiting[0]]
    )
    assert len(found({"parameter": "SubmissionTime", "operator": "last days", "value": 1})) == 5
    assert found({"parameter": "SubmissionTime", "operator": "lt", "value": "2000-01-01"}) == []
    assert (
        len(found({"parameter": "LastUpdateTime", "operator": "gt", "value": "2000-01-01Z"})) == 5
    )
    both = found(
        {"parameter": "JobGroup", "operator": "eq", "value": "g2"},
        {"parameter": "Site", "operator": "eq", "value": "SITE-A"},
        {"parameter": "Status", "operator": "eq", "value": "Done"},
    )
    assert both == [world["done"]]


def test_sort_parameters_and_pages(world: dict[str, Any]) -> None:
    alice: User = world["alice"]
    body = {
        "parameters": ["JobID", "JobName", "Status"],
        "sort": [{"parameter": "JobName", "direction": "desc"}],
    }
    first = search(alice, body, page=1, per_page=2)
    assert first.status_code == 206
    assert first.headers["Content-Range"] == "jobs 0-1/5"
    assert [row["JobName"] for row in first.json()] == ["scan-3", "scan-2"]
    assert set(first.json()[0]) == {"JobID", "JobName", "Status"}
    last = search(alice, body, page=3, per_page=2)
    assert (last.status_code, last.headers["Content-Range"]) == (206, "jobs 4-4/5")
    assert [row["JobName"] for row in last.json()] == ["run-Done"]
    whole = search(alice, body, per_page=10)
    assert (whole.status_code, whole.headers["Content-Range"]) == (200, "jobs 0-4/5")
    past = search(alice, body, page=9, per_page=10)
    assert (past.status_code, past.json(), past.headers["Content-Range"]) == (200, [], "jobs */5")
    distinct = search(alice, {"parameters": ["Status"], "distinct": True})
    assert sorted(row["Status"] for row in distinct.json()) == ["Done", "Running", "Waiting"]
    default = search(alice, {}).json()[0]
    assert "description" not in default and {"JobID", "Status", "Owner", "VO"} <= set(default)


def test_summary_counts_per_group(world: dict[str, Any]) -> None:
    alice: User = world["alice"]
    reply = summary(alice, {"grouping": ["Status"]})
    assert reply.status_code == 200, reply.text
    assert reply.json() == [
        {"Status": "Done", "count": 1},
        {"Status": "Running", "count": 1},
        {"Status": "Waiting", "count": 3},
    ]
    by_site = summary(
        alice,
        {
            "grouping": ["Site", "Status"],
            "search": [{"parameter": "JobGroup", "operator": "eq", "value": "g2"}],
        },
    ).json()
    assert by_site == [
        {"Site": "SITE-A", "Status": "Done", "count": 1},
        {"Site": "SITE-A", "Status": "Running", "count": 1},
    ]


def one(parameter: str, operator: str, **value: Any) -> dict[str, Any]:
    return {"search": [{"parameter": parameter, "operator": operator, **value}]}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (one("Colour", "eq", value=1), "unknown job attribute"),
        (one("Status", "~", value=1), "unknown operator"),
        (one("Status", "in", values=[]), "needs 'values'"),
        (one("JobID", "eq", value="x"), "whole numbers"),
        (one("Site", "last days", value=2), "applies to times"),
        (one("SubmissionTime", "gt", value="soon"), "ISO 8601"),
        (one("Status", "eq"), "a value is needed"),
        ({"sort": [{"parameter": "Status", "direction": "up"}]}, "sort direction"),
    ],
)
def test_bad_searches_are_refused_clearly(
    world: dict[str, Any], body: dict[str, Any], words: str
) -> None:
    reply = search(world["alice"], body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == "bad_request"
    assert words in reply.json()["message"]


def test_pilots_may_not_search(world: dict[str, Any]) -> None:
    pilot: FakePilot = world["pilot"]
    for path in ("/jobs/search", "/jobs/summary"):
        reply = requests.post(pilot.coord.api(path), json={"grouping": ["Status"]},
                              headers=pilot.headers())  # fmt: skip
        assert reply.status_code == 403


def test_counts_stay_true_to_the_jobs_through_every_kind_of_change(
    world: dict[str, Any], vo: str
) -> None:
    """Summaries and totals read the ``job_counts`` rollup kept by triggers: after kills,
    reschedules, deletes and a parametric submission whose JobGroup names its job ids, it
    still says what counting the jobs themselves says."""
    alice: User = world["alice"]
    pilot: FakePilot = world["pilot"]
    assert alice.post(f"/jobs/{world['running']}/kill").status_code == 200
    assert alice.post(f"/jobs/{world['done']}/reschedule").status_code == 200
    assert requests.delete(alice.coord.api(f"/jobs/{world['waiting'][0]}"),
                           headers=alice.headers(), timeout=10).status_code == 200  # fmt: skip
    alice.submit({"Executable": "/bin/true", "Parameters": 3, "JobGroup": "grp-%j"})
    (matched,) = pilot.match()
    pilot.report(matched, "Running")
    pilot.report(matched, "Failed", exit_code=3)
    grouping = ["VO", "Owner", "OwnerGroup", "Site", "Status", "JobGroup"]
    mine = [{"parameter": "VO", "operator": "eq", "value": vo}]
    counted = [
        tuple(row)
        for row in alice.coord.sql(
            "SELECT vo, owner, owner_group, site, status, job_group, COUNT(*) FROM jobs "
            "WHERE vo = :vo GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6",
            vo=vo,
        )
    ]
    assert len(counted) >= 6

    def rolled() -> list[tuple[Any, ...]]:
        rows = summary(world["admin"], {"grouping": grouping, "search": mine}).json()
        return [(*(row[name] for name in grouping), row["count"]) for row in rows]

    assert rolled() == counted
    # On PostgreSQL the changes above are deltas until the sweeper folds them: fold them
    # now, as it would, and the counts are the same.
    db = Database(alice.coord.database_url)
    try:
        with db.write() as conn:
            rollup.compact(conn)
    finally:
        db.dispose()
    assert rolled() == counted
    total = search(alice, {"search": [{"parameter": "Status", "operator": "neq",
                                       "value": "Deleted"}]}, per_page=1)  # fmt: skip
    expected = sum(n for *_key, status, _group, n in counted if status != "Deleted"
                   and _key[1] == "alice")  # fmt: skip
    assert total.headers["Content-Range"].endswith(f"/{expected}")
