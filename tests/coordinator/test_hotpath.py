"""The pilots' hot routes served below FastAPI (``coordinator.api.hotpath``).

Every request a test here sends goes twice: as a pilot sends it (JSON with a
Content-Length: the hot path serves it) and chunked (no Content-Length: the hot path hands
it to FastAPI, which served every request before it existed). The two answers must be the
same, successes and refusals alike; ``/metrics`` shows which path served what.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from protocol import SHA256_HEADER
from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot, User


def chunked(body: Any) -> Iterator[bytes]:
    """The body as a generator: requests then sends it chunked, without Content-Length."""
    yield json.dumps(body).encode()


def both_ways(
    url: str, body: Any, headers: dict[str, str]
) -> tuple[requests.Response, requests.Response]:
    """The same POST, served by the hot path and then by FastAPI."""
    json_headers = {**headers, "Content-Type": "application/json"}
    hot = requests.post(url, data=json.dumps(body).encode(), headers=json_headers, timeout=30)
    slow = requests.post(url, data=chunked(body), headers=json_headers, timeout=30)
    return hot, slow


def hot_counts(coord: RunningCoordinator) -> dict[tuple[str, str], int]:
    text = requests.get(f"{coord.url}/metrics", timeout=30).text
    pattern = r'gridpilot_hot_path_requests_total\{route="(\w+)",thread="(\w+)"\} (\d+)'
    return {(route, thread): int(n) for route, thread, n in re.findall(pattern, text)}


def served_by_hot_path(coord: RunningCoordinator, route: str) -> int:
    return sum(n for (name, _thread), n in hot_counts(coord).items() if name == route)


def test_match_is_served_by_the_hot_path_with_fastapis_answer(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    user = User(coord, vo)
    (first,), (second,) = user.submit(), user.submit()
    pilot = FakePilot(coord, vo)
    before = served_by_hot_path(coord, "match")
    url = coord.api(f"/pilots/{pilot.pilot_id}/match")
    hot, slow = both_ways(url, {"n": 1, "cores_free": 1}, pilot.headers())
    assert served_by_hot_path(coord, "match") == before + 1
    assert (hot.status_code, slow.status_code) == (200, 200)
    assert hot.headers["content-type"] == slow.headers["content-type"] == "application/json"
    hot_job, slow_job = hot.json()["jobs"][0], slow.json()["jobs"][0]
    assert {hot_job["job_id"], slow_job["job_id"]} == {first, second}
    hot_job.pop("job_id"), slow_job.pop("job_id")
    assert hot_job == slow_job
    assert hot.json()["retry_after_s"] == slow.json()["retry_after_s"]
    empty_hot, empty_slow = both_ways(url, {"n": 1, "cores_free": 1}, pilot.headers())
    empty = {"jobs": [], "retry_after_s": 10.0, "wider_job_cores": 0}
    assert empty_hot.json() == empty_slow.json() == empty


def each_way(
    coord: RunningCoordinator, jobs: list[int], action: str, body: Any, headers: dict[str, str]
) -> tuple[requests.Response, requests.Response]:
    """``body`` posted to ``/jobs/{id}/action`` of the first job by the hot path and of the
    second (in the same state) by FastAPI."""
    json_headers = {**headers, "Content-Type": "application/json"}
    hot_url, slow_url = (coord.api(f"/jobs/{job_id}/{action}") for job_id in jobs)
    hot = requests.post(hot_url, data=json.dumps(body).encode(), headers=json_headers, timeout=30)
    slow = requests.post(slow_url, data=chunked(body), headers=json_headers, timeout=30)
    return hot, slow


def two_matched_jobs(coord: RunningCoordinator, vo: str) -> tuple[User, FakePilot, list[int]]:
    """A user with two jobs, both matched to one pilot."""
    user = User(coord, vo)
    jobs = [*user.submit(), *user.submit()]
    pilot = FakePilot(coord, vo)
    assert sorted(pilot.match(n=2)) == sorted(jobs)
    return user, pilot, jobs


def same_but_ids(hot: requests.Response, slow: requests.Response, jobs: list[int]) -> bool:
    """Equal answers, but for the job they name (``jobs``: hot's, slow's) and the moment."""
    renamed = re.sub(rf"\b{jobs[1]}\b", str(jobs[0]), slow.text)
    moments = {"created_at", "updated_at"}
    hot_body, slow_body = (
        {k: v for k, v in json.loads(text).items() if k not in moments}
        for text in (hot.text, renamed)
    )
    return (hot.status_code, hot_body) == (slow.status_code, slow_body)


def test_reports_and_heartbeats_answer_the_same_both_ways(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    user, pilot, jobs = two_matched_jobs(coord, vo)
    headers = pilot.job_headers()
    steps = [
        ("status", {"status": "Running", "minor_status": "Application"}, 200),
        ("heartbeat", {"cpu_s": 1.5, "log_offsets": {"stdout": 10}}, 200),
        ("status", {"status": "Waiting"}, 409),  # an invalid transition
        ("status", {"status": "Done", "exit_code": 0, "timings_s": {"payload": 0.5}}, 200),
        ("heartbeat", {"cpu_s": 2.0}, 409),  # the job is over: the lease is gone
    ]
    for action, body, status in steps:
        hot, slow = each_way(coord, jobs, action, body, headers)
        assert hot.status_code == status, hot.text
        assert same_but_ids(hot, slow, jobs), (hot.text, slow.text)
    assert [user.job(job_id)["status"] for job_id in jobs] == ["Done", "Done"]


def test_batched_heartbeats_answer_the_same_both_ways(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    _user, pilot, jobs = two_matched_jobs(coord, vo)
    batch = {"jobs": [{"job_id": job_id, "heartbeat": {"wall_s": 3.0}} for job_id in jobs]}
    batch["jobs"].append({"job_id": 10**12, "heartbeat": {}})
    before = served_by_hot_path(coord, "pilot_heartbeat")
    hot, slow = both_ways(coord.api(f"/pilots/{pilot.pilot_id}/heartbeat"), batch, pilot.headers())
    assert served_by_hot_path(coord, "pilot_heartbeat") == before + 1
    assert hot.status_code == slow.status_code == 200
    assert hot.json() == slow.json()
    assert [r["ok"] for r in hot.json()["results"]] == [True, True, False]


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Authorization": "Bearer nonsense"}, 401, "unauthenticated"),
        ({}, 401, "unauthenticated"),
        ({"role": "user"}, 403, "forbidden"),
        ({"X-Gridpilot-Protocol": None}, 400, "bad_request"),
        ({"X-Gridpilot-Protocol": "0"}, 426, "pilot_too_old"),
        ({"X-Gridpilot-Protocol": "one"}, 400, "bad_request"),
        ({"X-Gridpilot-Pilot": None}, 400, "bad_request"),
        ({"vo": "another-vo"}, 404, "not_found"),
    ],
)
def test_refusals_are_fastapis(
    shared_coordinator: RunningCoordinator,
    vo: str,
    headers: dict[str, Any],
    status: int,
    code: str,
) -> None:
    coord = shared_coordinator
    (job_id,) = User(coord, vo).submit()
    pilot = FakePilot(coord, vo)
    pilot.match()
    sent = dict(pilot.job_headers())
    if "role" in headers or "vo" in headers:
        token = coord.token(
            role=headers.get("role", "pilot"), subject="factory", vo=headers.get("vo", vo)
        )
        sent["Authorization"] = f"Bearer {token}"
    elif headers == {}:
        sent.pop("Authorization")
    for name, value in headers.items():
        if name in ("role", "vo"):
            continue
        if value is None:
            sent.pop(name)
        else:
            sent[name] = value
    before = served_by_hot_path(coord, "job_status")
    url = coord.api(f"/jobs/{job_id}/status")
    hot, slow = both_ways(url, {"status": "Running"}, sent)
    assert (hot.status_code, hot.json()["code"]) == (status, code)
    assert hot.json() == slow.json()
    assert hot.headers.get("www-authenticate") == slow.headers.get("www-authenticate")
    assert served_by_hot_path(coord, "job_status") == before


def test_malformed_bodies_get_fastapis_validation_errors(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    pilot = FakePilot(coord, vo)
    url = coord.api(f"/pilots/{pilot.pilot_id}/match")
    for body in ({"n": "two"}, {"n": -1}, [], "n", {"tags": [1]}, {"n": 10**30}):
        hot, slow = both_ways(url, body, pilot.headers())
        assert hot.status_code == slow.status_code == 400, body
        assert hot.json() == slow.json()
        assert hot.json()["code"] == "bad_request"
    # What msgspec refuses and pydantic's lax mode takes ("1", true) goes to FastAPI: it is
    # still taken.
    for lax in ({"n": "1", "cores_free": "1"}, {"n": True}):
        hot, slow = both_ways(url, lax, pilot.headers())
        assert hot.status_code == slow.status_code == 200, lax


def test_rate_limit_answers_429_with_retry_after(
    start_coordinator: Any,
) -> None:
    coord = start_coordinator(rate_limit_per_s=1, rate_limit_burst=2)
    pilot = FakePilot(coord, "vo1")
    url = coord.api(f"/pilots/{pilot.pilot_id}/match")
    answers = [
        requests.post(url, json={"n": 1}, headers=pilot.headers(), timeout=30) for _ in range(3)
    ]
    assert [a.status_code for a in answers][-1] == 429
    assert answers[-1].json()["code"] == "rate_limited"
    assert int(answers[-1].headers["Retry-After"]) >= 1


def test_writes_wait_in_a_thread_while_another_write_runs(coordinator: RunningCoordinator) -> None:
    """A large submission holds the write turn for a while: heartbeats meanwhile are
    served by worker threads, none is refused, and the event loop is not held up."""
    user, pilot = User(coordinator, "vo1"), FakePilot(coordinator, "vo1")
    (job_id,) = user.submit()
    assert pilot.match() == [job_id]
    submitting = threading.Thread(target=user.submit, kwargs={"Parameters": 40_000})
    submitting.start()
    answers = []
    while submitting.is_alive() and len(answers) < 200:
        answers.append(pilot.heartbeat(job_id).status_code)
        health = requests.get(f"{coordinator.url}/health", timeout=30)
        assert health.status_code == 200
    submitting.join(timeout=120)
    assert set(answers) == {200}
    threads = {thread for (route, thread), n in hot_counts(coordinator).items() if n}
    assert "worker" in threads, "no heartbeat met the submission's write"


def test_registration_lists_the_features_and_assignments_carry_a_lease(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    (job_id,) = User(coord, vo).submit()
    token = coord.token(role="pilot", subject="factory", vo=vo)
    body = {"hostname": "wn01", "pilot_version": "0.1.0"}
    reply = requests.post(coord.api("/pilots"), json=body, headers=coord.headers(token))
    assert reply.json()["features"] == ["running_in_heartbeat"]
    # Once Running: heartbeat timeout (3 x 30 s) + stalled grace (300 s).
    assert reply.json()["job_lease_s"] == 390.0
    pilot_id = reply.json()["pilot_id"]
    matched = requests.post(
        coord.api(f"/pilots/{pilot_id}/match"), json={"n": 1}, headers=coord.headers(token)
    )
    (job,) = matched.json()["jobs"]
    assert (job["job_id"], job["lease_s"]) == (job_id, 180.0)  # the match timeout


def test_running_rides_the_pilot_heartbeat(shared_coordinator: RunningCoordinator, vo: str) -> None:
    """The payload starts at once; its start and first heartbeat are one entry of the
    pilot's next heartbeat, and the job is Running from then on."""
    coord = shared_coordinator
    user, pilot, jobs = two_matched_jobs(coord, vo)
    entries = [{"job_id": jobs[0], "started": True, "heartbeat": {"wall_s": 0.5}}]
    entries.append({"job_id": jobs[1], "heartbeat": {}})  # not started yet
    url = coord.api(f"/pilots/{pilot.pilot_id}/heartbeat")
    reply = requests.post(url, json={"jobs": entries}, headers=pilot.headers(), timeout=30)
    assert [r["ok"] for r in reply.json()["results"]] == [True, True]
    assert [user.job(job_id)["status"] for job_id in jobs] == ["Running", "Matched"]
    assert user.history(jobs[0])[-1] == ("Running", "Application", "JobWrapper")
    again = requests.post(url, json={"jobs": entries[:1]}, headers=pilot.headers(), timeout=30)
    assert again.json()["results"][0]["ok"]
    assert [s for s, _m, _src in user.history(jobs[0])].count("Running") == 1


def test_one_final_report_for_a_job_too_short_for_a_heartbeat(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    """Status, output sandbox reference and log ends in one request, straight from
    Matched: the history still shows it Running before Done."""
    coord = shared_coordinator
    user = User(coord, vo)
    (job_id,) = user.submit()
    pilot = FakePilot(coord, vo)
    assert pilot.match() == [job_id]
    final = {"status": "Done", "exit_code": 0, "started": True, "log_offsets": {"stdout": 6}}
    reply = pilot.report(job_id, **final)
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "Done"
    statuses = [status for status, _minor, _source in user.history(job_id)]
    assert statuses[-3:] == ["Matched", "Running", "Done"]
    (other,) = user.submit()
    assert pilot.match() == [other]
    unstarted = pilot.report(other, status="Done")
    assert (unstarted.status_code, unstarted.json()["code"]) == (409, "invalid_transition")


def test_downloads_go_out_by_sendfile_like_fastapis(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    """The hot path sends a stored sandbox with sendfile: the same bytes and headers as
    FastAPI's answer (which a conditional request still gets), the same refusals."""
    coord = shared_coordinator
    token = coord.token(vo=vo)
    data = os.urandom(9 * 1024 * 1024 + 7)  # more than one sendfile call's worth
    digest = hashlib.sha256(data).hexdigest()
    headers = coord.headers(token, **{SHA256_HEADER: digest})
    stored = requests.post(coord.api("/sandboxes"), data=data, headers=headers, timeout=60)
    assert stored.status_code == 201, stored.text
    url = coord.api(f"/sandboxes/{digest}")
    hot = requests.get(url, headers=coord.headers(token), timeout=60)
    slow = requests.get(url, headers=coord.headers(token, **{"If-None-Match": '"x"'}), timeout=60)
    for answer in (hot, slow):
        assert answer.status_code == 200
        assert answer.content == data
        assert answer.headers[SHA256_HEADER] == digest
        assert answer.headers["content-type"] == "application/octet-stream"
        assert answer.headers["content-length"] == str(len(data))
    someone = coord.token(subject="mallory", vo=vo)
    for who, name in ((someone, digest), (token, "not-a-digest"), ("nonsense", digest)):
        refused = requests.get(coord.api(f"/sandboxes/{name}"), headers=coord.headers(who))
        slow_refused = requests.get(
            coord.api(f"/sandboxes/{name}"), headers=coord.headers(who, **{"If-Range": "x"})
        )
        assert refused.status_code in (400, 401, 404)
        assert (refused.status_code, refused.json()) == (
            slow_refused.status_code,
            slow_refused.json(),
        )


def test_a_download_left_half_way_leaves_the_server_serving(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    token = coord.token(vo=vo)
    data = os.urandom(32 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    headers = coord.headers(token, **{SHA256_HEADER: digest})
    assert requests.post(coord.api("/sandboxes"), data=data, headers=headers).status_code == 201
    for _ in range(3):
        with requests.get(
            coord.api(f"/sandboxes/{digest}"), headers=coord.headers(token), stream=True
        ) as partial:
            assert partial.status_code == 200
            partial.raw.read(1024 * 1024)  # then close the connection
    whole = requests.get(coord.api(f"/sandboxes/{digest}"), headers=coord.headers(token))
    assert hashlib.sha256(whole.content).hexdigest() == digest
