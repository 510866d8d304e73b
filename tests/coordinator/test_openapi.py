"""The API contract: the live OpenAPI document equals the committed snapshot, and every
endpoint is documented well enough for a client to be written from it."""

from __future__ import annotations

import difflib
import json
from typing import Any

import pytest
import requests

from protocol import API_PREFIX
from tests.conftest import RunningCoordinator
from tests.coordinator.regen_openapi import SNAPSHOT, live_document, render

REGENERATE = ".venv/bin/python tests/coordinator/regen_openapi.py"
ERROR_STATUSES = {"400", "401", "403", "404", "409", "413", "426", "429"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return live_document()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_the_schema_matches_the_committed_snapshot(document: dict[str, Any]) -> None:
    live = render(document)
    committed = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else ""
    if live != committed:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(True), live.splitlines(True), "committed", "live", n=2
            )
        )
        pytest.fail(
            "the API changed without its OpenAPI snapshot; if the change is intended, run\n"
            f"    {REGENERATE}\nand commit tests/coordinator/openapi.json. Diff (first 80 lines):\n"
            + "".join(diff.splitlines(True)[:80])
        )


def test_a_running_coordinator_serves_the_same_document(
    shared_coordinator: RunningCoordinator, document: dict[str, Any]
) -> None:
    served = requests.get(f"{shared_coordinator.url}/openapi.json", timeout=10).json()
    assert served == json.loads(json.dumps(document))


def test_every_api_endpoint_is_under_api_v1(document: dict[str, Any]) -> None:
    outside = [path for path in document["paths"] if not path.startswith(API_PREFIX + "/")]
    assert outside == [p for p in outside if p in ("/health", "/metrics")]


def test_every_operation_has_a_summary_and_documented_errors(document: dict[str, Any]) -> None:
    problems = []
    for method, path, operation in _operations(document):
        if not operation.get("summary"):
            problems.append(f"{method} {path}: no summary")
        if not path.startswith(API_PREFIX):
            continue
        responses = operation["responses"]
        missing = ERROR_STATUSES - set(responses)
        if missing:
            problems.append(f"{method} {path}: errors {sorted(missing)} not documented")
        for status in ERROR_STATUSES & set(responses):
            schema = responses[status]["content"]["application/json"]["schema"]
            if schema != {"$ref": "#/components/schemas/ErrorBody"}:
                problems.append(f"{method} {path}: {status} is not an ErrorBody")
        if "422" in responses and "ErrorBody" not in json.dumps(responses["422"]):
            problems.append(f"{method} {path}: 422 documented as FastAPI's, not ErrorBody")
    assert problems == []


def test_json_bodies_and_replies_are_typed(document: dict[str, Any]) -> None:
    """A JSON request or success reply must name a schema with properties, not ``{}``."""
    schemas = document["components"]["schemas"]
    untyped = []
    for method, path, operation in _operations(document):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        replies = [
            reply.get("content", {}).get("application/json")
            for status, reply in operation["responses"].items()
            if status.startswith("2")
        ]
        for where, media in [("request", body), *(("reply", r) for r in replies)]:
            if media is None:
                continue
            schema = media.get("schema", {})
            if schema.get("type") == "array":  # a list of typed rows (search: DiracX's shape)
                schema = schema.get("items", {})
            ref = schema.get("$ref", "")
            name = ref.rsplit("/", 1)[-1]
            if not name or not schemas.get(name, {}).get("properties"):
                untyped.append(f"{method} {path} {where}: {media.get('schema')}")
    assert untyped == [p for p in untyped if p.startswith("GET /health")]


def test_every_error_the_coordinator_answers_with_has_a_code_of_the_contract() -> None:
    """``ErrorBody.code`` values come from ``protocol.ErrorCode``, one list for both sides."""
    import inspect

    from coordinator import errors
    from coordinator.api import failures
    from protocol import ErrorCode

    raised = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.CoordinatorError)
    ]
    assert len(raised) > 10
    for cls in raised:
        assert isinstance(cls.code, ErrorCode), f"{cls.__name__}.code is not an ErrorCode"
    assert all(isinstance(code, ErrorCode) for code in failures.HTTP_CODES.values())


def test_the_document_lists_the_error_codes(document: dict[str, Any]) -> None:
    from protocol import ErrorCode

    described = document["components"]["schemas"]["ErrorBody"]["properties"]["code"]
    assert all(f"``{code.value}``" in described["description"] for code in ErrorCode)
