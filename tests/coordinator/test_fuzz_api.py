"""No 500 on any request: schemathesis generates requests from the live OpenAPI document
(valid and malformed bodies, paths, queries and headers) and sends each, with a user's, an
admin's or a registered pilot's token in turn, to a real coordinator.

Each operation gets ``FUZZ_EXAMPLES`` examples (default 30; set the environment variable
higher for a longer local run); the module runs in well under a minute.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from protocol import PROTOCOL_HEADER, PROTOCOL_VERSION
from tests.conftest import RunningCoordinator, _stop_and_check, launch_coordinator
from tests.coordinator.regen_openapi import live_document

pytestmark = pytest.mark.slow

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))


class Target:
    def __init__(self, coordinator: RunningCoordinator) -> None:
        self.c = coordinator
        user = coordinator.token("user", "fuzzer", "vo-fuzz")
        admin = coordinator.token("admin", "fuzz-ops", "vo-fuzz")
        pilot = coordinator.token("pilot", "fuzz-factory", "vo-fuzz")
        registration = {"hostname": "fuzz-node", "pilot_version": "fuzz"}
        reply = requests.post(
            coordinator.api("/pilots"),
            json=registration,
            headers=coordinator.headers(pilot),
            timeout=10,
        )
        reply.raise_for_status()
        pilot_id = reply.json()["pilot_id"]
        self.headers: Iterator[dict[str, str]] = itertools.cycle(
            [
                {"Authorization": f"Bearer {user}"},
                {"Authorization": f"Bearer {admin}"},
                {
                    "Authorization": f"Bearer {pilot}",
                    PROTOCOL_HEADER: str(PROTOCOL_VERSION),
                    "X-Gridpilot-Pilot": pilot_id,
                },
            ]
        )


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    # No rate limit: the fuzzer sends thousands of requests with three tokens.
    coordinator = launch_coordinator(tmp_path_factory.mktemp("fuzz"), rate_limit_per_s=0)
    try:
        yield Target(coordinator)
    finally:
        _stop_and_check(coordinator)  # fails on any unhandled error the server logged


# The schema the live app serves (tests/coordinator/test_openapi.py checks that the running
# coordinator serves exactly this document); loaded in-process so pytest can list one test
# per operation. (schemathesis's ``from_fixture`` does not work with pytest 9.)
schema = schemathesis.openapi.from_dict(live_document())


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_no_server_error(case: Any, fuzz_target: Target) -> None:
    # One token per example, in turn: each role's code paths get a third of the examples.
    headers = {**(case.headers or {}), **next(fuzz_target.headers)}
    case.call_and_validate(
        base_url=fuzz_target.c.url,
        headers=headers,
        checks=[not_a_server_error, response_schema_conformance],
        timeout=10,
    )
