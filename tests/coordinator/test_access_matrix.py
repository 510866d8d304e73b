"""The whole access matrix against a real coordinator: every operation of the API's OpenAPI
document x every role (user, admin, pilot) x every relation to the object acted on (the
caller's own, another's of the same VO, another VO's), plus a missing, expired and revoked
token, with the status each cell must get.

The operations come from the document the app serves (``live_document``), so a new route
cannot be missed: one without a row in ``ROWS`` fails ``test_every_operation_has_a_row``,
and a route left out of the document fails ``test_no_route_is_hidden_from_the_document``.
Adding a row is one line: method, path as the document spells it, the expected statuses
(built with the helpers below) and the request. An operation may have several rows, one
per ``variant`` of the object it acts on: a sandbox that is a job's input, its output or a
plain upload; a submission or a report naming someone else's sandbox.

The callers: ``user_own`` (alice in vo1, owner of the job), ``user_same_vo`` (bob, vo1),
``user_other_vo`` (an alice of vo2), ``admin_same_vo`` (vo1), ``admin_other_vo`` (vo2),
``pilot_own`` (the vo1 pilot the job is matched to), ``pilot_same_vo`` (a vo1 pilot of
another factory), ``pilot_other_vo`` (a vo2 pilot of the same factory name), and alice's
token missing, expired or revoked. Every cell acts on a fresh job of alice's, matched to
``pilot_own`` (or left Waiting for rows that say so); ``{pilot_id}`` in a path is always
``pilot_own``'s.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
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
from tests.coordinator.regen_openapi import live_document

USERS = ("user_own", "user_same_vo", "user_other_vo")
ADMINS = ("admin_same_vo", "admin_other_vo")
PILOTS = ("pilot_own", "pilot_same_vo", "pilot_other_vo")
BAD_TOKENS = ("no_token", "expired", "revoked")
CALLERS = USERS + ADMINS + PILOTS + BAD_TOKENS
DOCUMENTATION_ROUTES = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
"""FastAPI's own pages about the document: the only API routes the document leaves out."""
PORTAL_PREFIXES = ("/web/",)
PORTAL_ROUTES = frozenset({"/", "/web"})
"""The web portal's pages (HTML, session cookie): not API operations. Their own matrix, with
a row required for every page route, is tests/web/test_web_access.py."""


# -- expected statuses: one helper per kind of endpoint --------------------------------


def _cells(**statuses: int) -> dict[str, int]:
    cells = dict.fromkeys(BAD_TOKENS, 401)
    cells.update(statuses)
    assert set(cells) == set(CALLERS), set(CALLERS) ^ set(cells)
    return cells


def owner_job(ok: int) -> dict[str, int]:
    """A user endpoint on alice's job: alice and admins; other users never learn it exists."""
    return _cells(
        user_own=ok, user_same_vo=404, user_other_vo=404, admin_same_vo=ok, admin_other_vo=ok,
        **dict.fromkeys(PILOTS, 403),
    )  # fmt: skip


def any_user(ok: int) -> dict[str, int]:
    """A user endpoint on nothing in particular (submit, list)."""
    return _cells(**dict.fromkeys(USERS + ADMINS, ok), **dict.fromkeys(PILOTS, 403))


def owner_only(ok: int, others: int) -> dict[str, int]:
    """A user endpoint that only alice may do with her object, admins included."""
    return _cells(
        user_own=ok, **dict.fromkeys(("user_same_vo", "user_other_vo", *ADMINS), others),
        **dict.fromkeys(PILOTS, 403),
    )  # fmt: skip


def holder_job(ok: int) -> dict[str, int]:
    """A pilot endpoint on a job: only the pilot holding it; another pilot of the VO is told
    it lost the lease, a pilot of another VO does not see the job."""
    return _cells(
        pilot_own=ok, pilot_same_vo=409, pilot_other_vo=404,
        **dict.fromkeys(USERS + ADMINS, 403),
    )  # fmt: skip


def own_pilot(ok: int) -> dict[str, int]:
    """A pilot endpoint on pilot_own's record: only a pilot with that pilot's token."""
    return _cells(
        pilot_own=ok, pilot_same_vo=404, pilot_other_vo=404,
        **dict.fromkeys(USERS + ADMINS, 403),
    )  # fmt: skip


def any_pilot(ok: int) -> dict[str, int]:
    return _cells(**dict.fromkeys(PILOTS, ok), **dict.fromkeys(USERS + ADMINS, 403))


def same_vo(ok: int) -> dict[str, int]:
    """Something of vo1 that every vo1 member may read (the pilot registry); admins too."""
    return _cells(
        **dict.fromkeys(("user_own", "user_same_vo", "pilot_own", "pilot_same_vo"), ok),
        **dict.fromkeys(ADMINS, ok), user_other_vo=404, pilot_other_vo=404,
    )  # fmt: skip


def pilot_log_readers() -> dict[str, int]:
    """The pilot's own token, admins and the owners of jobs the pilot ran (alice's job of
    the cell, bob's of ``_build_world``); nobody else learns the pilot exists."""
    cells = _cells(**dict.fromkeys(USERS + PILOTS, 404), **dict.fromkeys(ADMINS, 200))
    cells.update(pilot_own=200, user_own=200, user_same_vo=200)
    return cells


def sandbox_readers(*, pilot_own: int) -> dict[str, int]:
    """One of alice's sandboxes: alice and admins read it; ``pilot_own`` when it belongs to
    the job it holds; nobody else, whatever digest they name."""
    return _cells(
        user_own=200, user_same_vo=404, user_other_vo=404, **dict.fromkeys(ADMINS, 200),
        pilot_own=pilot_own, pilot_same_vo=404, pilot_other_vo=404,
    )  # fmt: skip


def admins_only(ok: int) -> dict[str, int]:
    return _cells(**dict.fromkeys(ADMINS, ok), **dict.fromkeys(USERS + PILOTS, 403))


def anyone(ok: int) -> dict[str, int]:
    return _cells(**dict.fromkeys(USERS + ADMINS + PILOTS, ok))


def everybody(ok: int) -> dict[str, int]:
    """No token needed: bad tokens are not even looked at."""
    return dict.fromkeys(CALLERS, ok)


@dataclasses.dataclass(frozen=True)
class Row:
    method: str
    path: str
    expect: Mapping[str, int]
    json: Optional[Callable[[World], Any]] = None
    """The JSON body, built from the world (its sandboxes' digests)."""
    variant: str = ""
    waiting: bool = False
    """Leave the cell's job Waiting instead of matching it to pilot_own."""
    sandbox: str = "input"
    """Which of alice's sandboxes ``{sha256}`` names (see ``World.sandboxes``)."""
    upload: str = ""
    """Upload a small tar.gz with its sha256, as sandbox uploads do: ``unique`` bytes per
    caller, or the bytes of one of alice's sandboxes."""
    query: str = ""
    data: Optional[bytes] = None
    """A raw body (``application/octet-stream``) instead of JSON."""
    output: bool = False
    """The cell's job ends Done with an output sandbox (holding ``output.txt``)."""
    stream: bool = False
    """The reply is an endless stream (Server-Sent Events): only its status is read."""

    @property
    def operation(self) -> tuple[str, str]:
        return (self.method, self.path)

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}" + (f" [{self.variant}]" if self.variant else "")


def body(value: Any) -> Callable[[World], Any]:
    return lambda _world: value


JOBS = f"{API_PREFIX}/jobs"
PILOTS_PATH = f"{API_PREFIX}/pilots"
SANDBOXES = f"{API_PREFIX}/sandboxes"
JDL = 'Executable = "/bin/true";'
REGISTRATION = {"hostname": "wn1.example.org", "pilot_version": "matrix"}

ROWS = [
    Row("POST", JOBS, any_user(201), json=body({"description": JDL})),
    *[
        Row(
            "POST",
            JOBS,
            owner_only(201, others=404),
            variant=f"naming alice's {kind}",
            json=lambda w, kind=kind: {"description": JDL, "input_sandboxes": [w.sandboxes[kind]]},
        )
        for kind in ("input", "output")  # "upload" must stay in no job: see its GET row
    ],
    Row("GET", JOBS, any_user(200)),
    Row("GET", JOBS, any_user(200), variant="by ids", query="?ids={job_id}"),
    Row("GET", JOBS + "/{job_id}", owner_job(200)),
    Row("GET", JOBS + "/{job_id}/history", owner_job(200)),
    Row("GET", JOBS + "/{job_id}/explain", owner_job(200)),  # the same rules as GET job
    Row("GET", JOBS + "/{job_id}/explain", owner_job(200), variant="waiting", waiting=True),
    Row("POST", JOBS + "/{job_id}/kill", owner_job(200)),
    Row("POST", JOBS + "/{job_id}/reschedule", owner_job(200)),
    Row("DELETE", JOBS + "/{job_id}", owner_job(200), waiting=True),
    Row("POST", JOBS + "/{job_id}/status", holder_job(200), json=body({"status": "Running"})),
    Row(
        "POST",
        JOBS + "/{job_id}/status",
        holder_job(404),  # the pilot did not upload it: as if it did not exist
        variant="output naming alice's upload",
        json=lambda w: {"status": "Running", "output_sandbox": w.sandboxes["upload"]},
    ),
    Row("POST", JOBS + "/{job_id}/heartbeat", holder_job(200), json=body({})),
    Row("POST", PILOTS_PATH + "/{pilot_id}/heartbeat", own_pilot(200), json=body({"jobs": []})),
    Row("POST", PILOTS_PATH, any_pilot(201), json=body(REGISTRATION)),
    Row("POST", PILOTS_PATH + "/{pilot_id}/match", own_pilot(200), json=body({"n": 1})),
    Row(
        "POST",
        PILOTS_PATH + "/{pilot_id}/state",
        own_pilot(204),
        json=body({"accepting_work": True}),
    ),
    Row("POST", SANDBOXES, anyone(201), upload="unique"),
    Row(
        "POST",
        SANDBOXES,
        # New to everyone but alice: nobody learns that someone holds the same bytes.
        {**anyone(201), "user_own": 200},
        variant="alice's bytes again",
        upload="again",  # bytes no other row reads: after this row, everyone owns them
    ),
    Row(
        "GET",
        SANDBOXES + "/{sha256}",
        sandbox_readers(pilot_own=200),
        variant="input of alice's job",
        sandbox="input",
    ),
    Row(
        "GET",
        SANDBOXES + "/{sha256}",
        sandbox_readers(pilot_own=200),
        variant="output of alice's job",
        sandbox="output",
    ),
    Row(
        "GET",
        SANDBOXES + "/{sha256}",
        sandbox_readers(pilot_own=404),
        variant="alice's upload in no job",
        sandbox="upload",
    ),
    Row(
        "PUT",
        JOBS + "/{job_id}/logs/{stream}",
        holder_job(200),
        data=b"x\n",
        query="?offset=0",
    ),
    Row("GET", JOBS + "/{job_id}/logs/{stream}", owner_job(200)),
    Row(
        "PUT",
        PILOTS_PATH + "/{pilot_id}/log",
        own_pilot(200),
        data=b"x\n",
        query="?offset=0",
    ),
    Row("GET", PILOTS_PATH + "/{pilot_id}/log", pilot_log_readers()),
    Row("GET", PILOTS_PATH, anyone(200)),  # each caller sees their VO's pilots (admins: all)
    Row("GET", PILOTS_PATH + "/{pilot_id}", same_vo(200)),
    Row("GET", PILOTS_PATH + "/{pilot_id}/explain", same_vo(200)),
    Row(
        "POST",
        f"{API_PREFIX}/tokens",
        admins_only(201),
        json=body({"subject": "x", "vo": "vo1"}),
    ),
    Row(
        "POST",
        f"{API_PREFIX}/tokens/revoke",
        admins_only(200),
        json=body({"token_id": "dummy"}),
    ),
    Row("GET", f"{API_PREFIX}/tokens/revoked", admins_only(200)),
    # Only login credentials are exchanged: every caller here holds an access token.
    Row(
        "POST",
        f"{API_PREFIX}/tokens/exchange",
        _cells(**dict.fromkeys(USERS + ADMINS + PILOTS, 403)),
        json=body({}),
    ),
    Row("GET", f"{API_PREFIX}/tokens/whoami", anyone(200)),
    Row("GET", "/health", everybody(200)),
    Row("GET", "/metrics", everybody(200)),  # --metrics-access open, the default
    # Search, live events, accounting and output files (the portal's API, issue 16): users
    # see only their own jobs in them (tests/coordinator/test_search.py, test_events.py and
    # tests/web/test_web_access.py check what each caller sees, not only the status).
    Row("POST", JOBS + "/search", any_user(200), json=body({}), query="?per_page=10000"),
    Row("POST", JOBS + "/summary", any_user(200), json=body({"grouping": ["Status"]})),
    Row("GET", f"{API_PREFIX}/events", any_user(200), stream=True),
    Row("GET", f"{API_PREFIX}/accounting/final-statuses", any_user(200)),
    Row("GET", f"{API_PREFIX}/accounting/running-by-site", any_user(200)),
    Row("GET", f"{API_PREFIX}/accounting/cpu-efficiency", any_user(200)),
    Row("GET", f"{API_PREFIX}/accounting/failures", any_user(200)),
    Row("GET", JOBS + "/{job_id}/output", owner_job(200), output=True),
    Row("GET", JOBS + "/{job_id}/output/files", owner_job(200), output=True),
    Row("GET", JOBS + "/{job_id}/output/files/{name}", owner_job(200), output=True),
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
    pilot_ids: dict[str, str] = dataclasses.field(default_factory=dict)
    sandboxes: dict[str, str] = dataclasses.field(default_factory=dict)
    """Alice's sandboxes by kind (``input``, ``output``, ``upload``, ``again``): digests."""
    archives: dict[str, bytes] = dataclasses.field(default_factory=dict)

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
        return reply.json() if reply.content else None

    def upload(self, caller: str, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        headers = self.headers(caller, **{"X-Content-Sha256": digest})
        reply = requests.post(self.c.url + SANDBOXES, data=data, headers=headers, timeout=10)
        assert reply.status_code in (200, 201), reply.text
        return digest

    def fresh_job(self, *, waiting: bool) -> int:
        """A new job of alice's with her input sandbox, matched to pilot_own."""
        submitted = self.post(
            "user_own", JOBS, {"description": JDL, "input_sandboxes": [self.sandboxes["input"]]}
        )
        (job_id,) = submitted["job_ids"]
        if waiting:
            return job_id
        match_path = f"{PILOTS_PATH}/{self.pilot_ids['pilot_own']}/match"
        for _ in range(20):  # earlier cells may have left jobs Waiting: take them too
            matched = self.post("pilot_own", match_path, {"n": 10, "cores_free": 10})
            if job_id in [assignment["job_id"] for assignment in matched["jobs"]]:
                return job_id
        raise AssertionError(f"job {job_id} was never matched to pilot_own")

    def finished_with_output(self) -> int:
        """A job of alice's that pilot_own ran to Done with an output sandbox."""
        job_id = self.fresh_job(waiting=False)
        digest = self.upload("pilot_own", _tarball("output"))
        status = f"{JOBS}/{job_id}/status"
        self.post("pilot_own", status, {"status": "Running"})
        self.post("pilot_own", status, {"status": "Done", "exit_code": 0, "output_sandbox": digest})
        return job_id

    def send(self, row: Row, caller: str) -> requests.Response:
        job_id = str(self.finished_with_output()) if row.output else ""
        if not job_id and "{job_id}" in row.path + row.query:
            job_id = str(self.fresh_job(waiting=row.waiting))
        values = {
            "name": "output.txt",
            "job_id": job_id,
            "pilot_id": self.pilot_ids["pilot_own"],
            "sha256": self.sandboxes[row.sandbox],
            "stream": "stdout",
        }
        path = (row.path + row.query).format(**values)
        headers = self.headers(caller)
        kwargs: dict[str, Any] = {"json": row.json(self) if row.json else None}
        if row.data is not None:
            headers["Content-Type"] = "application/octet-stream"
            kwargs = {"data": row.data}
        if row.upload:
            unique = _tarball(f"{caller}-{row.name}")
            data = unique if row.upload == "unique" else self.archives[row.upload]
            headers["X-Content-Sha256"] = hashlib.sha256(data).hexdigest()
            headers["Content-Type"] = "application/octet-stream"
            kwargs = {"data": data}
        reply = requests.request(
            row.method, self.c.url + path, headers=headers, timeout=10, stream=row.stream, **kwargs
        )
        if row.stream and reply.status_code == 200:
            reply.close()  # an event stream never ends: its status and headers are the answer
        return reply


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
        "user_same_vo": c.token("user", "bob", "vo1"),
        "user_other_vo": c.token("user", "alice", "vo2"),
        "admin_same_vo": c.token("admin", "ops", "vo1"),
        "admin_other_vo": c.token("admin", "ops", "vo2"),
        "pilot_own": c.token("pilot", "factory-a", "vo1"),
        "pilot_same_vo": c.token("pilot", "factory-b", "vo1"),
        "pilot_other_vo": c.token("pilot", "factory-a", "vo2"),
        "no_token": None,
        "expired": c.token("user", "alice", "vo1", ttl_s=-60),
        "revoked": revoked,
    }
    world = World(c, tokens)
    token_id = verify_token(c.signing_key.public_key(), revoked).token_id
    world.post("admin_same_vo", f"{API_PREFIX}/tokens/revoke", {"token_id": token_id})
    for caller in PILOTS:
        registered = world.post(caller, PILOTS_PATH, REGISTRATION)
        world.pilot_ids[caller] = registered["pilot_id"]
    # Bob has run a job on pilot_own: he may read that pilot's log.
    world.post("user_same_vo", JOBS, {"description": JDL})
    own_match = f"{PILOTS_PATH}/{world.pilot_ids['pilot_own']}/match"
    assert world.post("pilot_own", own_match, {"n": 1})["jobs"]
    for kind in ("input", "upload", "again"):
        world.archives[kind] = _tarball(f"alice-{kind}")
        world.sandboxes[kind] = world.upload("user_own", world.archives[kind])
    world.sandboxes["output"] = _alice_output(world)
    return world


def _alice_output(world: World) -> str:
    """The output sandbox of one of alice's jobs, run to Done by pilot_own."""
    job_id = world.fresh_job(waiting=False)
    world.archives["output"] = _tarball("alice-output")
    digest = world.upload("pilot_own", world.archives["output"])
    status = f"{JOBS}/{job_id}/status"
    world.post("pilot_own", status, {"status": "Running"})
    world.post("pilot_own", status, {"status": "Done", "exit_code": 0, "output_sandbox": digest})
    return digest


# -- the tests --------------------------------------------------------------------------


def _document_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path) for path, item in live_document()["paths"].items() for method in item
    }


def _app_routes(app: FastAPI) -> set[tuple[str, str]]:
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazily included routers
        routes: list[Any] = list(app.routes)
    else:
        routes = [context.original_route for context in iter_route_contexts(app.routes)]
    # The document spells a path parameter without its convertor: {name:path} is {name}.
    return {
        (method, re.sub(r"\{(\w+):\w+\}", r"{\1}", str(route.path)))
        for route in routes
        for method in getattr(route, "methods", None) or ()
        if method != "HEAD"
    }


def test_every_operation_has_a_row() -> None:
    operations = _document_operations()
    covered = {row.operation for row in ROWS}
    names = [row.name for row in ROWS]
    assert len(set(names)) == len(names), "two rows with one name: give them variants"
    missing = sorted(operations - covered)
    stale = sorted(covered - operations)
    assert not missing, "operations without an access-matrix row (add one to ROWS each): " + (
        ", ".join(f"{m} {p}" for m, p in missing)
    )
    assert not stale, f"matrix rows for operations the document does not have: {stale}"


def test_no_route_is_hidden_from_the_document() -> None:
    """A route left out of the OpenAPI document would escape the matrix: there is none."""
    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(Settings(data_dir=Path(data_dir)))
        routes = _app_routes(app)
        app.state.context.db.dispose()
    hidden = {
        (method, path)
        for method, path in routes - _document_operations()
        if path not in DOCUMENTATION_ROUTES | PORTAL_ROUTES and not path.startswith(PORTAL_PREFIXES)
    }
    assert not hidden, f"routes missing from the OpenAPI document: {sorted(hidden)}"


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
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


def test_a_refused_sandbox_answers_as_if_it_did_not_exist(world: World) -> None:
    """For bob, alice's sandbox and a digest nobody uploaded get the same answer."""
    unknown = "ab" * 32
    for kind in ("input", "output", "upload"):
        digest = world.sandboxes[kind]
        replies = [
            requests.get(
                f"{world.c.url}{SANDBOXES}/{name}",
                headers=world.headers("user_same_vo"),
                timeout=10,
            )
            for name in (digest, unknown)
        ]
        shapes = [(r.status_code, r.json()["code"], r.json()["message"].replace(d, "*"))
                  for r, d in zip(replies, (digest, unknown))]  # fmt: skip
        assert shapes[0] == shapes[1], (kind, shapes)


def test_bad_tokens_are_told_why(world: World) -> None:
    reasons = {}
    for caller in BAD_TOKENS:
        reply = requests.get(world.c.api("/jobs"), headers=world.headers(caller), timeout=10)
        reasons[caller] = reply.json()["message"]
    assert "missing Authorization" in reasons["no_token"]
    assert "expired" in reasons["expired"]
    assert "revoked" in reasons["revoked"]
