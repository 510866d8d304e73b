"""The wire protocol is a public contract: additive changes only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import protocol
from protocol import (
    CheckReport,
    CheckStatus,
    JobAssignment,
    JobStatus,
    MatchReply,
    PilotRegistration,
    message_schema,
    vocabulary_schema,
)

SNAPSHOT = Path(__file__).with_name("protocol_schema.json")
VOCABULARY_SNAPSHOT = Path(__file__).with_name("vocabulary_schema.json")


def _only_additions(snapshot_file: Path, current: dict[str, dict[str, str]]) -> None:
    snapshot = json.loads(snapshot_file.read_text())
    for name, fields in snapshot.items():
        assert name in current, f"{name} was removed"
        for field, kind in fields.items():
            assert field in current[name], f"{name}.{field} was removed"
            assert current[name][field] == kind, f"{name}.{field} changed"
    assert current == snapshot, f"additions: regenerate {snapshot_file.name}"


def test_every_message_matches_the_snapshot() -> None:
    """Fail when a message changes without the snapshot (regenerate it only for additions)."""
    _only_additions(SNAPSHOT, message_schema())


def test_header_names_and_enum_values_match_the_snapshot() -> None:
    """Header names and enum values (states, error codes) are the wire's words too."""
    _only_additions(VOCABULARY_SNAPSHOT, vocabulary_schema())


def test_public_names_are_frozen() -> None:
    assert set(protocol.__all__) >= {
        "JobStatus",
        "JobAssignment",
        "MatchRequest",
        "MatchReply",
        "JobStatusUpdate",
        "PilotRegistration",
        "ErrorBody",
    }
    for name in protocol.__all__:
        assert hasattr(protocol, name)


def test_job_states_are_diracs() -> None:
    assert [s.value for s in JobStatus] == [
        "Submitting", "Received", "Checking", "Waiting", "Matched", "Running", "Completing",
        "Done", "Completed", "Failed", "Stalled", "Rescheduled", "Killed", "Deleted",
    ]  # fmt: skip


def test_nested_messages_round_trip_through_json() -> None:
    registration = PilotRegistration(
        hostname="wn1",
        pilot_version="0.1.0",
        checks=[
            CheckReport(
                name="cores", status=CheckStatus.OK, facts={"cores": 4}, tags=["4Processors"]
            )
        ],
    )
    back = PilotRegistration.from_dict(json.loads(json.dumps(registration.to_dict())))
    assert back == registration
    assert back.checks[0].status is CheckStatus.OK


def test_newer_peer_fields_are_ignored() -> None:
    """A pilot keeps working when a newer coordinator adds fields."""
    reply = MatchReply.from_dict(
        {"jobs": [{"job_id": 7, "executable": "/bin/true", "future_field": 1}], "later": True}
    )
    assert reply.jobs == [JobAssignment(job_id=7, executable="/bin/true")]


def test_wrong_shapes_are_value_errors() -> None:
    with pytest.raises(ValueError):
        JobAssignment.from_dict({"executable": "/bin/true"})  # job_id missing
    with pytest.raises(ValueError):
        MatchReply.from_dict(["not", "an", "object"])  # type: ignore[arg-type]


def test_a_batched_heartbeat_reply_carries_each_jobs_refusal() -> None:
    reply = protocol.PilotHeartbeatReply.from_dict(
        {
            "results": [
                {"job_id": 1, "ok": True, "commands": [{"kind": "kill", "reason": "owner"}]},
                {"job_id": 2, "ok": False, "error": {"code": "lease_lost", "message": "gone"}},
            ]
        }
    )
    kept, lost = reply.results
    assert kept.commands == [protocol.Command(kind="kill", reason="owner")]
    assert lost.error == protocol.ErrorBody(code="lease_lost", message="gone")
    assert protocol.PilotHeartbeatReply.from_dict(reply.to_dict()) == reply
