"""The whole access matrix against a real coordinator: every caller x every ``/api/v1``
endpoint, own and other VO, with the status each must get.

The endpoints are read from the app's routes: an endpoint without a row in ``ROWS`` fails
``test_every_endpoint_has_a_matrix_row``. Adding a row is one line: method, path as the app
declares it, the expected statuses (built with the helpers below) and the request body.

The callers: ``user_own`` (alice in vo1, owner of the job), ``user_other`` (bob, vo1),
``user_other_vo`` (an alice of vo2), ``admin`` (vo1) and ``admin_other_vo`` (vo2),
``pilot_holder`` (the vo1 pilot the job is matched to), ``pilot_not_holder`` (another vo1
pilot, from another factory), ``pilot_other_vo`` (a vo2 pilot), and alice's token missing,
expired or revoked. Every cell acts on a fresh job of alice's, matched to ``pilot_holder``
(or left Waiting for rows that say so); ``{pilot_id}`` in a path is always the holder's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Optional

import pytest
import requests
from fastapi import FastAPI

from coordinator.app import create_app
from coordinator.logic.auth import verify_token
from coordinator.settings import Settings
from protocol import API_PREFIX, PROTOCOL_HEADER, PROTOCOL_VERSION
from tests.conftest import RunningCoordinator, _stop_and_check, launch_coordinator

USERS = ("user_own", "user_other", "user_other_vo")
ADMINS = ("admin", "admin_other_vo")
PILOTS = ("pilot_holder", "pilot_not_holder", "pilot_other_vo")
BAD_TOKENS = ("no_token", "expired", "revoked")
CALLERS = USERS + ADMINS + PILOTS + BAD_TOKENS


# -- expected statuses: one helper per kind of endpoint --------------------------------


def _cells(**statuses: int) -> dict[str, int]:
    cells = dict.fromkeys(BAD_TOKENS, 401)
    cells.update(statuses)
    assert set(cells) == set(CALLERS), set(CALLERS) - set(cells)
    return cells


def owner_job(ok: int) -> dict[str, int]:
    """A user endpoint on alice's job: alice and admins; other users never learn it exists."""
    return _cells(
        user_own=ok, user_other=404, user_other_vo=404, admin=ok, admin_other_vo=ok,
        **dict.fromkeys(PILOTS, 403),
    )  # fmt: skip


def any_user(ok: int) -> dict[str, int]:
    """A user endpoint on nothing in particular (submit, list)."""
    return _cells(**dict.fromkeys(USERS + ADMINS, ok), **dict.fromkeys(PILOTS, 403))


def holder_job(ok: int) -> dict[str, int]:
    """A pilot endpoint on a job: only the pilot holding it; another pilot of the VO is told
    it lost the lease, a pilot of another VO does not see the job."""
    return _cells(
        pilot_holder=ok, pilot_not_holder=409, pilot_other_vo=404,
        **dict.fromkeys(USERS + ADMINS, 403),
    )  # fmt: skip


def own_pilot(ok: int) -> dict[str, int]:
    """A pilot endpoint on the holder's pilot record: only a pilot with that pilot's token."""
    return _cells(
        pilot_holder=ok, pilot_not_holder=404, pilot_other_vo=404,
        **dict.fromkeys(USERS + ADMINS, 403),
    )  # fmt: skip


def any_pilot(ok: int) -> dict[str, int]:
    return _cells(**dict.fromkeys(PILOTS, ok), **dict.fromkeys(USERS + ADMINS, 403))


def same_vo(ok: int) -> dict[str, int]:
    """Something of vo1 that every vo1 member may read (the pilot registry); admins too."""
    return _cells(
        **dict.fromkeys(("user_own", "user_other", "pilot_holder", "pilot_not_holder"), ok),
        **dict.fromkeys(ADMINS, ok), user_other_vo=404, pilot_other_vo=404,
    )  # fmt: skip


def pilot_log_readers() -> dict[str, int]:
    """The pilot's own token and admins; nobody else learns the pilot exists."""
    cells = _cells(**dict.fromkeys(USERS + PILOTS, 404), **dict.fromkeys(ADMINS, 200))
    cells["pilot_holder"] = 200
    return cells


def admins_only(ok: int) -> dict[str, int]:
    return _cells(**dict.fromkeys(ADMINS, ok), **dict.fromkeys(USERS + PILOTS, 403))


def anyone(ok: int) -> dict[str, int]:
    return _cells(**dict.fromkeys(USERS + ADMINS + PILOTS, ok))


@dataclasses.dataclass(frozen=True)
class Row:
    method: str
    path: str
    expect: Mapping[str, int]
    json: Optional[Any] = None
    waiting: bool = False
    """Leave the cell's job Waiting instead of matching it to the holder."""
    sandbox_body: bool = False
    """Send a small tar.gz (unique per caller) with its sha256, as sandbox uploads do."""
    query: str = ""
    data: Optional[bytes] = None
    """A raw body (``application/octet-stream``) instead of JSON."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)


JOBS = f"{API_PREFIX}/jobs"
PILOTS_PATH = f"{API_PREFIX}/pilots"
JDL = 'Executable = "/bin/true";'
REGISTRATION = {"hostname": "wn1.example.org", "pilot_version": "matrix"}

ROWS = [
    Row("POST", JOBS, any_user(201), json={"description": JDL}),
    Row("GET", JOBS, any_user(200)),
    Row("GET", JOBS + "/{job_id}", owner_job(200)),
    Row("GET", JOBS + "/{job_id}/history", owner_job(200)),
    Row("POST", JOBS + "/{job_id}/kill", owner_job(200)),
    Row("POST", JOBS + "/{job_id}/reschedule", owner_job(200)),
    Row("DELETE", JOBS + "/{job_id}", owner_job(200), waiting=True),
    Row("POST", JOBS + "/{job_id}/status", holder_job(200), json={"status": "Running"}),
    Row("POST", JOBS + "/{job_id}/heartbeat", holder_job(200), json={}),
    Row("POST", PILOTS_PATH + "/{pilot_id}/heartbeat", own_pilot(200), json={"jobs": []}),
    Row("POST", PILOTS_PATH, any_pilot(201), json=REGISTRATION),
    Row("POST", PILOTS_PATH + "/{pilot_id}/match", own_pilot(200), json={"n": 1}),
    Row("POST", PILOTS_PATH + "/{pilot_id}/state", own_pilot(204), json={"accepting_work": True}),
    Row("POST", f"{API_PREFIX}/sandboxes", anyone(201), sandbox_body=True),
    Row(
        "GET",
        f"{API_PREFIX}/sandboxes/{{sha256}}",
        # The job's input sandbox: its owner, admins and pilots of the factory holding it.
        _cells(
            user_own=200,
            user_other=404,
            user_other_vo=404,
            admin=200,
            admin_other_vo=200,
            pilot_holder=200,
            pilot_not_holder=404,
            pilot_other_vo=404,
        ),
    ),
    Row("PUT", JOBS + "/{job_id}/logs/{stream}", holder_job(200), data=b"x\n", query="?offset=0"),
    Row("GET", JOBS + "/{job_id}/logs/{stream}", owner_job(200)),
    Row("PUT", PILOTS_PATH + "/{pilot_id}/log", own_pilot(200), data=b"x\n", query="?offset=0"),
    Row(
        "GET",
        PILOTS_PATH + "/{pilot_id}/log",
        pilot_log_readers(),
    ),
    Row("GET", PILOTS_PATH, anyone(200)),  # each caller sees their VO's pilots (admins: all)
    Row("GET", PILOTS_PATH + "/{pilot_id}", same_vo(200)),
    Row("POST", f"{API_PREFIX}/tokens", admins_only(201), json={"subject": "x", "vo": "vo1"}),
    Row("POST", f"{API_PREFIX}/tokens/revoke", admins_only(200), json={"token_id": "dummy"}),
    Row("GET", f"{API_PREFIX}/tokens/revoked", admins_only(200)),
]


# -- the world every cell runs in -------------------------------------------------------


def _tarball(name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = name.encode()
        info = tarfile.TarInfo(f"{name}.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclasses.dataclass
class World:
    c: RunningCoordinator
    tokens: dict[str, Optional[str]]
    pilot_ids: dict[str, str]
    sandbox: str

    def headers(self, caller: str, **extra: str) -> dict[str, str]:
        headers = {PROTOCOL_HEADER: str(PROTOCOL_VERSION), **extra}
        token = self.tokens[caller]
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        # Users send no pilot header; pilots name themselves (once registered).
        if caller in self.pilot_ids:
            headers["X-Gridpilot-Pilot"] = self.pilot_ids[caller]
        return headers

    def post(self, caller: str, path: str, body: Any) -> Any:
        reply = requests.post(
            self.c.url + path, json=body, headers=self.headers(caller), timeout=10
        )
        assert reply.status_code < 300, reply.text
        return reply.json()

    def fresh_job(self, *, waiting: bool) -> int:
        """A new job of alice's with the shared input sandbox, matched to the holder."""
        submitted = self.post(
            "user_own", JOBS, {"description": JDL, "input_sandboxes": [self.sandbox]}
        )
        (job_id,) = submitted["job_ids"]
        if waiting:
            return job_id
        match_path = f"{PILOTS_PATH}/{self.pilot_ids['pilot_holder']}/match"
        for _ in range(20):  # earlier cells may have left jobs Waiting: take them too
            matched = self.post("pilot_holder", match_path, {"n": 10, "cores_free": 10})
            if job_id in [assignment["job_id"] for assignment in matched["jobs"]]:
                return job_id
        raise AssertionError(f"job {job_id} was never matched to the holder")

    def send(self, row: Row, caller: str) -> requests.Response:
        values = {
            "job_id": str(self.fresh_job(waiting=row.waiting)) if "{job_id}" in row.path else "",
            "pilot_id": self.pilot_ids["pilot_holder"],
            "sha256": self.sandbox,
            "stream": "stdout",
        }
        path = row.path.format(**values) + row.query
        headers = self.headers(caller)
        kwargs: dict[str, Any] = {"json": row.json}
        if row.data is not None:
            headers["Content-Type"] = "application/octet-stream"
            kwargs = {"data": row.data}
        if row.sandbox_body:
            data = _tarball(f"{caller}-{id(row)}")
            headers["X-Content-Sha256"] = hashlib.sha256(data).hexdigest()
            headers["Content-Type"] = "application/octet-stream"
            kwargs = {"data": data}
        return requests.request(
            row.method, self.c.url + path, headers=headers, timeout=10, **kwargs
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    c = launch_coordinator(tmp_path_factory.mktemp("matrix"), rate_limit_per_s=0)
    try:
        yield _build_world(c)
    finally:
        _stop_and_check(c)


def _build_world(c: RunningCoordinator) -> World:
    revoked = c.token("user", "alice", "vo1")
    tokens: dict[str, Optional[str]] = {
        "user_own": c.token("user", "alice", "vo1"),
        "user_other": c.token("user", "bob", "vo1"),
        "user_other_vo": c.token("user", "alice", "vo2"),
        "admin": c.token("admin", "ops", "vo1"),
        "admin_other_vo": c.token("admin", "ops", "vo2"),
        "pilot_holder": c.token("pilot", "factory-a", "vo1"),
        "pilot_not_holder": c.token("pilot", "factory-b", "vo1"),
        "pilot_other_vo": c.token("pilot", "factory-a", "vo2"),
        "no_token": None,
        "expired": c.token("user", "alice", "vo1", ttl_s=-60),
        "revoked": revoked,
    }
    world = World(c, tokens, {}, sandbox="")
    token_id = verify_token(c.signing_key.public_key(), revoked).token_id
    world.post("admin", f"{API_PREFIX}/tokens/revoke", {"token_id": token_id})
    for caller in PILOTS:
        registered = world.post(caller, PILOTS_PATH, REGISTRATION)
        world.pilot_ids[caller] = registered["pilot_id"]
    data = _tarball("input")
    world.sandbox = hashlib.sha256(data).hexdigest()
    headers = world.headers("user_own", **{"X-Content-Sha256": world.sandbox})
    uploaded = requests.post(c.api("/sandboxes"), data=data, headers=headers, timeout=10)
    assert uploaded.status_code == 201, uploaded.text
    return world


# -- the tests --------------------------------------------------------------------------


def _app_endpoints(app: FastAPI) -> set[tuple[str, str]]:
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazily included routers
        routes: list[Any] = list(app.routes)
    else:
        routes = [context.original_route for context in iter_route_contexts(app.routes)]
    return {
        (method, route.path)
        for route in routes
        if str(getattr(route, "path", "")).startswith(API_PREFIX)
        for method in getattr(route, "methods", ())
        if method != "HEAD"
    }


def test_every_endpoint_has_a_matrix_row() -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(Settings(data_dir=Path(data_dir)))
        endpoints = _app_endpoints(app)
        app.state.context.db.dispose()
    rows = {row.key for row in ROWS}
    assert len(rows) == len(ROWS), "two rows for one endpoint"
    missing = sorted(endpoints - rows)
    stale = sorted(rows - endpoints)
    assert not missing, "endpoints without an access-matrix row (add one line to ROWS each): " + (
        ", ".join(f"{m} {p}" for m, p in missing)
    )
    assert not stale, f"matrix rows for endpoints the app does not have: {stale}"


@pytest.mark.parametrize("row", ROWS, ids=[f"{row.method} {row.path}" for row in ROWS])
def test_access(world: World, row: Row) -> None:
    got = {caller: world.send(row, caller) for caller in CALLERS}
    wrong = {
        caller: f"expected {row.expect[caller]}, got {reply.status_code} {reply.text[:160]}"
        for caller, reply in got.items()
        if reply.status_code != row.expect[caller]
    }
    assert not wrong, "\n".join(f"{caller}: {what}" for caller, what in wrong.items())
    for caller, reply in got.items():
        if reply.status_code >= 400:
            body = reply.json()
            assert set(body) == {"code", "message", "details"}, (caller, body)
        if reply.status_code == 401:
            assert reply.headers.get("WWW-Authenticate") == "Bearer"


def test_bad_tokens_are_told_why(world: World) -> None:
    reasons = {}
    for caller in BAD_TOKENS:
        reply = requests.get(world.c.api("/jobs"), headers=world.headers(caller), timeout=10)
        reasons[caller] = reply.json()["message"]
    assert "missing Authorization" in reasons["no_token"]
    assert "expired" in reasons["expired"]
    assert "revoked" in reasons["revoked"]
