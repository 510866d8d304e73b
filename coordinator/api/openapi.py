"""The OpenAPI document: every ``/api/v1`` operation documents its ``ErrorBody`` answers.

FastAPI documents request validation failures as 422 ``HTTPValidationError``; this
coordinator answers them with 400 and an ``ErrorBody`` (see ``coordinator.app``), so the
document says that instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from protocol import API_PREFIX, ErrorCode

ERROR_SCHEMA_REF = "#/components/schemas/ErrorBody"
ERROR_STATUSES = {
    "400": "Malformed request or job description",
    "401": "Missing, malformed, forged, expired or revoked token",
    "403": "Valid token of the wrong role for this endpoint",
    "404": "No such object, or one the caller may not see",
    "409": "Refused state change (invalid transition, lease lost)",
    "413": "Body or sandbox over the configured limit",
    "422": "Content that cannot be used, e.g. sandbox bytes not matching their sha256",
    "426": "Pilot protocol version too old",
    "429": "Too many requests with this token; see the Retry-After header",
}
ERROR_BODY_SCHEMA: dict[str, Any] = {
    "title": "ErrorBody",
    "type": "object",
    "description": "Body of every error response: ``{code, message, details}``.",
    "properties": {
        "code": {
            "title": "Code",
            "type": "string",
            "description": "What was refused, for programs: one of "
            + ", ".join(f"``{code.value}``" for code in ErrorCode)
            + " (clients keep unknown codes as strings).",
        },
        "message": {"title": "Message", "type": "string"},
        "details": {"title": "Details", "type": "object", "additionalProperties": True},
    },
    "required": ["code", "message"],
}


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the document with the errors filled in (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, routes=app.routes, description=None
            )
            app.openapi_schema = with_error_responses(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_error_responses(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["ErrorBody"] = ERROR_BODY_SCHEMA
    for path, operations in document.get("paths", {}).items():
        if not path.startswith(API_PREFIX):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, description in ERROR_STATUSES.items():
                error = {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}},
                }
                # An endpoint's own description of an error wins, FastAPI's 422 does not.
                if status == "422" or status not in responses:
                    responses[status] = error
    return document
