"""The portal's access rules over plain HTTP with session cookies, like the API's access
matrix: every page for alice (the owner, vo1), bob (another user of vo1), an alice of vo2,
an admin and nobody; what each sees through pages, downloads and the event stream; the
session cookie's flags; CSRF on every action; no open redirect after login."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from coordinator.app import create_app
from coordinator.settings import Settings
from tests.conftest import RunningCoordinator, _stop_and_check, launch_coordinator
from tests.coordinator.pilot_calls import FakePilot
from tests.coordinator.sse_calls import EventReader

CALLERS = ("alice", "bob", "other_vo", "admin")


@dataclasses.dataclass
class World:
    c: RunningCoordinator
    sessions: dict[str, requests.Session]
    job_id: int
    pilot_id: str

    def page(self, who: str, path: str, **kwargs: Any) -> requests.Response:
        return self.sessions[who].get(self.c.url + path, timeout=10, **kwargs)


def log_in(c: RunningCoordinator, token: str) -> requests.Session:
    session = requests.Session()
    form = session.get(c.url + "/web/login", timeout=10)
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce, form.text
    reply = session.post(
        c.url + "/web/login",
        files={"token": (None, token), "nonce": (None, nonce.group(1)), "next": (None, "/web")},
        allow_redirects=False,
        timeout=10,
    )
    assert reply.status_code == 303, reply.text
    cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie, cookie
    return session


def csrf_of(session: requests.Session, c: RunningCoordinator) -> str:
    page = session.get(c.url + "/web/launchpad", timeout=10).text
    found = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page)
    assert found, page[:500]
    return found.group(1)


def _tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("secret.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"secret"))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    c = launch_coordinator(tmp_path_factory.mktemp("web-access"), rate_limit_per_s=0)
    try:
        yield _build(c)
    finally:
        _stop_and_check(c)


def _build(c: RunningCoordinator) -> World:
    tokens = {
        "alice": c.token("user", "alice", "vo1"),
        "bob": c.token("user", "bob", "vo1"),
        "other_vo": c.token("user", "alice", "vo2"),
        "admin": c.token("admin", "ops", "vo2"),
    }
    sessions = {who: log_in(c, token) for who, token in tokens.items()}
    submitted = requests.post(
        c.api("/jobs"),
        json={"description": '[JobName = "secret-job"; Executable = "/bin/true";]'},
        headers=c.headers(tokens["alice"]),
        timeout=10,
    )
    (job_id,) = submitted.json()["job_ids"]
    pilot = FakePilot(c, "vo1")
    assert pilot.match() == [job_id]
    pilot.report(job_id, "Running")
    pilot.append_log(job_id, b"secret line\n", offset=0)
    data = _tarball()
    digest = hashlib.sha256(data).hexdigest()
    headers = pilot.headers(**{"X-Content-Sha256": digest})
    assert requests.post(c.api("/sandboxes"), data=data, headers=headers, timeout=10).ok
    done = pilot.report(job_id, "Done", exit_code=0, output_sandbox=digest)
    assert done.status_code == 200, done.text
    return World(c, sessions, job_id, pilot.pilot_id)


Check = Callable[[requests.Response], bool]


def shows(text: str) -> Check:
    return lambda reply: reply.status_code == 200 and text in reply.text


def hides(text: str) -> Check:
    return lambda reply: reply.status_code == 200 and text not in reply.text


def status(code: int) -> Check:
    return lambda reply: reply.status_code == code


def done(count: int) -> Check:
    """An accounting reply counting ``count`` jobs that reached Done."""
    return lambda reply: reply.status_code == 200 and sum(reply.json()["series"]["Done"]) == count


def everyone(check: Check) -> dict[str, Check]:
    return dict.fromkeys(CALLERS, check)


@dataclasses.dataclass(frozen=True)
class PageRow:
    route: str
    """The route as the app declares it (the completeness check compares these)."""
    path: str
    expect: dict[str, Check]


def rows(job_id: int, pilot_id: str) -> list[PageRow]:
    owner = {"alice": shows("secret-job"), "admin": shows("secret-job")}
    others = {"bob": hides("secret-job"), "other_vo": hides("secret-job")}
    pilot_owner = {"alice": shows(pilot_id), "bob": shows(pilot_id), "admin": shows(pilot_id)}
    return [
        PageRow("/", "/", {who: shows("Job Monitor") for who in CALLERS}),
        PageRow("/web", "/web", {who: shows("Job Monitor") for who in CALLERS}),
        PageRow("/web/jobs", "/web/jobs", {**owner, **others}),
        PageRow(
            "/web/jobs/{job_id}",
            f"/web/jobs/{job_id}",
            {**owner, "bob": status(404), "other_vo": status(404)},
        ),
        PageRow("/web/pilots", "/web/pilots", {**pilot_owner, "other_vo": hides(pilot_id)}),
        PageRow(
            "/web/pilots/{pilot_id}/log",
            f"/web/pilots/{pilot_id}/log",
            {
                # alice's job ran on this pilot: its log may say what went wrong (as the API)
                "alice": status(200),
                "bob": status(404),
                "other_vo": status(404),
                "admin": status(200),
            },
        ),
        PageRow("/web/launchpad", "/web/launchpad", everyone(shows("Launchpad"))),
        PageRow("/web/accounting", "/web/accounting", everyone(shows("Accounting"))),
        PageRow("/web/login", "/web/login", {who: status(200) for who in CALLERS}),
    ]


def api_rows(job_id: int) -> list[tuple[str, dict[str, Check]]]:
    """The API URLs the pages use, with the session cookie instead of a bearer token."""
    owner = {"alice": status(200), "admin": status(200)}
    nobody_else = {"bob": status(404), "other_vo": status(404)}
    return [
        (f"/api/v1/jobs/{job_id}/output", {**owner, **nobody_else}),
        (f"/api/v1/jobs/{job_id}/output/files", {**owner, **nobody_else}),
        (
            f"/api/v1/jobs/{job_id}/output/files/secret.txt",
            {"alice": shows("secret"), "admin": shows("secret"), **nobody_else},
        ),
        (
            f"/api/v1/jobs/{job_id}/logs/stdout",
            {"alice": shows("secret line"), "admin": shows("secret line"), **nobody_else},
        ),
        (
            "/api/v1/accounting/final-statuses",
            {"alice": done(1), "admin": done(1), "bob": done(0), "other_vo": done(0)},
        ),
        ("/api/v1/accounting/failures", {who: status(200) for who in CALLERS}),
    ]


def test_every_page_route_has_a_row() -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(Settings(data_dir=Path(data_dir)))
        try:
            from fastapi.routing import iter_route_contexts
        except ImportError:  # FastAPI before lazily included routers
            routes: list[Any] = list(app.routes)
        else:
            routes = [context.original_route for context in iter_route_contexts(app.routes)]
        pages = {
            str(route.path)
            for route in routes
            if "GET" in (getattr(route, "methods", None) or ())
            and not getattr(route, "include_in_schema", True)
            and not str(route.path).startswith(("/docs", "/redoc", "/openapi"))
        }
        app.state.context.db.dispose()
    covered = {row.route for row in rows(0, "")}
    assert pages == covered, f"pages without a row: {pages - covered}; stale: {covered - pages}"


def test_pages_show_each_caller_only_their_share(world: World) -> None:
    wrong = []
    for row in rows(world.job_id, world.pilot_id):
        for who, check in row.expect.items():
            reply = world.page(who, row.path)
            if not check(reply):
                wrong.append(f"{who} {row.path}: {reply.status_code} {reply.text[:120]!r}")
    assert not wrong, "\n".join(wrong)


def test_downloads_and_data_behind_the_pages(world: World) -> None:
    wrong = []
    for path, expect in api_rows(world.job_id):
        for who, check in expect.items():
            reply = world.page(who, path)
            if not check(reply):
                wrong.append(f"{who} {path}: {reply.status_code} {reply.text[:120]!r}")
    assert not wrong, "\n".join(wrong)


def test_searches_through_the_session_see_only_ones_own(world: World) -> None:
    for who, expected in (("alice", [world.job_id]), ("bob", []), ("other_vo", [])):
        reply = world.sessions[who].post(
            world.c.url + "/api/v1/jobs/search",
            json={"parameters": ["JobID"]},
            headers={"X-CSRF-Token": csrf_of(world.sessions[who], world.c)},
            timeout=10,
        )
        assert [row["JobID"] for row in reply.json()] == expected, who


def test_the_event_stream_of_another_vo_carries_nothing_of_it(world: World) -> None:
    cookies = {who: world.sessions[who].cookies.get_dict() for who in CALLERS}
    readers = {}
    for who in ("alice", "other_vo"):
        header = "; ".join(f"{k}={v}" for k, v in cookies[who].items())
        readers[who] = EventReader(world.c.api("/events"), {"Cookie": header}, logs="true")
    try:
        time.sleep(0.5)
        # alice reschedules her job (a status change, then a fresh log from the pilot).
        csrf = csrf_of(world.sessions["alice"], world.c)
        reply = world.sessions["alice"].post(
            world.c.api(f"/jobs/{world.job_id}/reschedule"),
            headers={"X-CSRF-Token": csrf},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        (other_job,) = requests.post(
            world.c.api("/jobs"),
            json={"description": 'Executable = "/bin/true";'},
            headers=world.c.headers(world.c.token("user", "alice", "vo2")),
            timeout=10,
        ).json()["job_ids"]
        readers["alice"].wait_for(lambda e: e["data"].get("status") == "Waiting")
        readers["other_vo"].wait_for(lambda e: e["data"]["job_id"] == other_job)
        seen = {e["data"]["job_id"] for e in readers["other_vo"].seen}
        assert world.job_id not in seen
    finally:
        for reader in readers.values():
            reader.close()


def test_nobody_logged_in_is_sent_to_the_login_page(world: World) -> None:
    for row in rows(world.job_id, world.pilot_id):
        if row.route == "/web/login":
            continue
        reply = requests.get(world.c.url + row.path, allow_redirects=False, timeout=10)
        if row.path in ("/", "/web"):
            assert reply.status_code == 303
            continue
        assert reply.status_code == 303, row.path
        assert reply.headers["location"].startswith("/web/login?next="), row.path


def test_actions_need_the_csrf_token(world: World) -> None:
    alice = world.sessions["alice"]
    kill = world.c.api(f"/jobs/{world.job_id}/kill")
    for headers in ({}, {"X-CSRF-Token": "0" * 64}):
        refused = alice.post(kill, headers=headers, timeout=10)
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden"), headers
    bob_token = csrf_of(world.sessions["bob"], world.c)  # another session's token
    assert alice.post(kill, headers={"X-CSRF-Token": bob_token}, timeout=10).status_code == 403
    launch = alice.post(
        world.c.url + "/web/launchpad",
        files={"description": (None, 'Executable = "/bin/true";')},
        timeout=10,
    )
    assert launch.status_code == 403
    logout = alice.post(world.c.url + "/web/logout", data={}, timeout=10)
    assert logout.status_code == 403
    assert alice.get(world.c.url + "/web/jobs", timeout=10).status_code == 200  # still in
    accepted = alice.post(kill, headers={"X-CSRF-Token": csrf_of(alice, world.c)}, timeout=10)
    assert accepted.status_code == 200, accepted.text


def test_login_refuses_pilot_tokens_forged_forms_and_foreign_redirects(world: World) -> None:
    c = world.c
    session = requests.Session()
    page = session.get(c.url + "/web/login", timeout=10).text
    nonce = re.search(r'name="nonce" value="([^"]+)"', page)
    assert nonce
    pilot = session.post(
        c.url + "/web/login",
        data={"token": c.token("pilot", "factory", "vo1"), "nonce": nonce.group(1)},
        timeout=10,
    )
    assert pilot.status_code == 401 and "pilot token" in pilot.text
    forged = requests.post(
        c.url + "/web/login", data={"token": c.token("user"), "nonce": "guess"}, timeout=10
    )
    assert forged.status_code == 403
    page = session.get(c.url + "/web/login?next=//evil.example/x", timeout=10).text
    nonce = re.search(r'name="nonce" value="([^"]+)"', page)
    assert nonce and "evil" not in page
    reply = session.post(
        c.url + "/web/login",
        data={"token": c.token("user"), "nonce": nonce.group(1), "next": "//evil.example/x"},
        allow_redirects=False,
        timeout=10,
    )
    assert (reply.status_code, reply.headers["location"]) == (303, "/web/jobs")
