"""No 500 on any request, for any role: schemathesis generates requests from the live OpenAPI
document (valid and malformed bodies, paths, queries and headers) and sends them to a real
coordinator with a user's, an admin's and a registered pilot's token: every operation is
fuzzed once per role, each with its own examples.

The coordinator holds a few jobs in several states and a pilot (whose id replaces generated
``pilot_id`` path values), so requests reach past "not found". Each operation and role gets
``FUZZ_EXAMPLES`` examples (default 20; set the environment variable higher for a longer
local run, e.g. ``FUZZ_EXAMPLES=500``); the module runs in about a minute.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from protocol import API_PREFIX, PROTOCOL_HEADER, PROTOCOL_VERSION
from tests.conftest import RunningCoordinator, _stop_and_check, launch_coordinator
from tests.coordinator.regen_openapi import live_document

pytestmark = pytest.mark.slow

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
ROLES = ("user", "admin", "pilot")


class Target:
    """A coordinator with something in it, and each role's headers."""

    def __init__(self, coordinator: RunningCoordinator) -> None:
        self.c = coordinator
        user = coordinator.token("user", "fuzzer", "vo-fuzz")
        admin = coordinator.token("admin", "fuzz-ops", "vo-fuzz")
        pilot = coordinator.token("pilot", "fuzz-factory", "vo-fuzz")
        self.pilot_id = self._call(pilot, "POST", "/pilots", json=REGISTRATION)["pilot_id"]
        self.headers: dict[str, dict[str, str]] = {
            "user": {"Authorization": f"Bearer {user}"},
            "admin": {"Authorization": f"Bearer {admin}"},
            "pilot": {
                "Authorization": f"Bearer {pilot}",
                PROTOCOL_HEADER: str(PROTOCOL_VERSION),
                "X-Gridpilot-Pilot": self.pilot_id,
            },
        }
        self._seed(user, pilot)

    def _call(self, token: str, method: str, path: str, **kwargs: Any) -> Any:
        headers = self.c.headers(token, **kwargs.pop("headers", {}))
        headers["X-Gridpilot-Pilot"] = getattr(self, "pilot_id", "")
        reply = requests.request(method, self.c.api(path), headers=headers, timeout=10, **kwargs)
        assert reply.status_code < 300, reply.text
        return reply.json() if reply.content else None

    def _seed(self, user: str, pilot: str) -> None:
        """Jobs 1-6: Waiting, Matched, Running, Done with an output sandbox... (small ids are
        the ones the fuzzer tries most)."""
        description = json.dumps({"Executable": "/bin/echo", "Arguments": "%n", "Parameters": 6})
        self._call(user, "POST", "/jobs", json={"description": description, "format": "json"})
        matched = self._call(
            pilot, "POST", f"/pilots/{self.pilot_id}/match", json={"n": 3, "cores_free": 3}
        )
        job_ids = [job["job_id"] for job in matched["jobs"]]
        for job_id in job_ids[1:]:
            self._call(pilot, "POST", f"/jobs/{job_id}/status", json={"status": "Running"})
        data = _tarball()
        digest = hashlib.sha256(data).hexdigest()
        upload = {"data": data, "headers": {"X-Content-Sha256": digest}}
        self._call(pilot, "POST", "/sandboxes", **upload)
        done = {"status": "Done", "exit_code": 0, "output_sandbox": digest}
        self._call(pilot, "POST", f"/jobs/{job_ids[-1]}/status", json=done)


REGISTRATION = {"hostname": "fuzz-node", "pilot_version": "fuzz", "cores": 4}


def _tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("out.txt")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"out"))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    # No rate limit: the fuzzer sends thousands of requests with three tokens.
    coordinator = launch_coordinator(tmp_path_factory.mktemp("fuzz"), rate_limit_per_s=0)
    try:
        yield Target(coordinator)
    finally:
        _stop_and_check(coordinator)  # fails on any unhandled error the server logged


@pytest.fixture(params=ROLES)
def role(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# The schema the live app serves (tests/coordinator/test_openapi.py checks that the running
# coordinator serves exactly this document); loaded in-process so pytest can list one test
# per operation. (schemathesis's ``from_fixture`` does not work with pytest 9.)
schema = schemathesis.openapi.from_dict(live_document()).exclude(
    # An event stream never ends: a fuzzed request would only time out. Its parameters and
    # access are tested in tests/coordinator/test_events.py and the access matrix.
    path=f"{API_PREFIX}/events"
)


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_no_server_error(case: Any, fuzz_target: Target, role: str) -> None:
    if "pilot_id" in (case.path_parameters or {}):
        case.path_parameters["pilot_id"] = fuzz_target.pilot_id
    headers = {**(case.headers or {}), **fuzz_target.headers[role]}
    case.call_and_validate(
        base_url=fuzz_target.c.url,
        headers=headers,
        checks=[not_a_server_error, response_schema_conformance],
        timeout=10,
    )
