"""Sandbox upload and download against a real coordinator process."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from tests.conftest import RunningCoordinator

SHA = "X-Content-Sha256"


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def upload(
    coord: RunningCoordinator, token: str, data: Any, sha256: str | None = None
) -> requests.Response:
    digest = sha256 if sha256 is not None else hashlib.sha256(data).hexdigest()
    headers = coord.headers(token, **{SHA: digest, "Content-Type": "application/octet-stream"})
    return requests.post(coord.api("/sandboxes"), data=data, headers=headers)


def download(coord: RunningCoordinator, token: str, sha256: str) -> requests.Response:
    return requests.get(coord.api(f"/sandboxes/{sha256}"), headers=coord.headers(token))


def stored_files(coord: RunningCoordinator) -> list[Path]:
    return [p for p in (coord.data_dir / "sandboxes").rglob("*") if p.is_file()]


def leftovers(coord: RunningCoordinator) -> list[str]:
    return os.listdir(coord.data_dir / "tmp")


def test_round_trip_and_second_upload(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    token = coord.token(vo=vo)
    data = tarball({"input.txt": b"payload input\n" * 1000})
    digest = hashlib.sha256(data).hexdigest()

    first = upload(coord, token, data)
    assert first.status_code == 201
    assert first.json() == {"sha256": digest, "size_bytes": len(data)}
    assert upload(coord, token, data).status_code == 200

    fetched = download(coord, token, digest)
    assert fetched.status_code == 200
    assert fetched.content == data
    assert fetched.headers[SHA] == digest
    assert (coord.data_dir / "sandboxes" / digest[:2] / digest).read_bytes() == data


def test_streamed_upload_without_length(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    token = coord.token(vo=vo)
    pieces = [os.urandom(256 * 1024) for _ in range(12)]
    digest = hashlib.sha256(b"".join(pieces)).hexdigest()

    def chunks() -> Iterator[bytes]:
        yield from pieces

    reply = upload(coord, token, chunks(), sha256=digest)
    assert reply.status_code == 201, reply.text
    assert reply.json()["size_bytes"] == 12 * 256 * 1024
    assert download(coord, token, digest).content == b"".join(pieces)


def test_checksum_mismatch_keeps_nothing(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    token = coord.token(vo=vo)
    before = stored_files(coord)
    claimed = hashlib.sha256(b"something else").hexdigest()
    reply = upload(coord, token, b"the real bytes", sha256=claimed)
    assert reply.status_code == 422
    error = reply.json()
    assert error["code"] == "checksum_mismatch"
    assert error["details"]["actual"] == hashlib.sha256(b"the real bytes").hexdigest()
    assert stored_files(coord) == before
    assert leftovers(coord) == []
    assert download(coord, token, claimed).status_code == 404


def test_oversize_upload_is_refused(start_coordinator: Callable[..., RunningCoordinator]) -> None:
    coord = start_coordinator(max_sandbox_bytes=1024)
    token = coord.token()
    big = os.urandom(4096)
    reply = upload(coord, token, big)
    assert reply.status_code == 413
    assert reply.json()["code"] == "too_large"

    def chunks() -> Iterator[bytes]:
        yield big[:1000]
        yield big[1000:]

    streamed = upload(coord, token, chunks(), sha256=hashlib.sha256(big).hexdigest())
    assert (streamed.status_code, streamed.json()["code"]) == (413, "too_large")
    assert stored_files(coord) == []
    assert leftovers(coord) == []
    assert upload(coord, token, os.urandom(1024)).status_code == 201


def test_bad_or_missing_digest_header(shared_coordinator: RunningCoordinator) -> None:
    coord = shared_coordinator
    token = coord.token()
    assert upload(coord, token, b"x", sha256="not-a-digest").status_code == 400
    reply = requests.post(coord.api("/sandboxes"), data=b"x", headers=coord.headers(token))
    assert (reply.status_code, reply.json()["code"]) == (400, "bad_request")
    assert download(coord, token, "zz").status_code == 400


def test_sandboxes_are_private_to_uploader_owner_and_their_pilot(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    alice = coord.token(subject="alice", vo=vo)
    data = tarball({"secret.txt": b"alice's data"})
    digest = upload(coord, alice, data).json()["sha256"]

    bob = coord.token(subject="bob", vo=vo)
    pilot = coord.token(role="pilot", subject="factory", vo=vo)
    admin = coord.token(role="admin", subject="root", vo="ops")
    assert download(coord, bob, digest).status_code == 404
    assert download(coord, pilot, digest).status_code == 404
    assert download(coord, admin, digest).content == data

    description = {"Executable": "/bin/cat", "InputSandbox": ["secret.txt"]}
    body = {"description": json.dumps(description), "format": "json", "input_sandboxes": [digest]}
    requests.post(coord.api("/jobs"), json=body, headers=coord.headers(alice))
    reg = {"hostname": "wn", "pilot_version": "0.1.0"}
    pilot_id = requests.post(coord.api("/pilots"), json=reg, headers=coord.headers(pilot)).json()[
        "pilot_id"
    ]
    match = requests.post(
        coord.api(f"/pilots/{pilot_id}/match"), json={}, headers=coord.headers(pilot)
    ).json()
    [assignment] = match["jobs"]
    assert assignment["input_sandboxes"] == [digest]
    assert assignment["description"]["InputSandbox"] == ["secret.txt"]
    assert download(coord, pilot, digest).content == data
    assert download(coord, bob, digest).status_code == 404


def test_output_sandbox_reaches_the_owner(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    alice = coord.token(subject="alice", vo=vo)
    body = {"description": json.dumps({"Executable": "/bin/true"}), "format": "json"}
    [job_id] = requests.post(coord.api("/jobs"), json=body, headers=coord.headers(alice)).json()[
        "job_ids"
    ]
    pilot = coord.token(role="pilot", subject="factory", vo=vo)
    reg = {"hostname": "wn", "pilot_version": "0.1.0"}
    pilot_id = requests.post(coord.api("/pilots"), json=reg, headers=coord.headers(pilot)).json()[
        "pilot_id"
    ]
    requests.post(coord.api(f"/pilots/{pilot_id}/match"), json={}, headers=coord.headers(pilot))
    out = tarball({"std.out": b"result\n"})
    digest = upload(coord, pilot, out).json()["sha256"]
    headers = coord.headers(pilot, **{"X-Gridpilot-Pilot": pilot_id})
    status = coord.api(f"/jobs/{job_id}/status")
    requests.post(status, json={"status": "Running"}, headers=headers)
    unknown = requests.post(
        status, json={"status": "Done", "output_sandbox": "cd" * 32}, headers=headers
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
    done = requests.post(
        status, json={"status": "Done", "exit_code": 0, "output_sandbox": digest}, headers=headers
    )
    assert done.json()["output_sandbox"] == digest
    assert download(coord, alice, digest).content == out
    assert download(coord, coord.token(subject="bob", vo=vo), digest).status_code == 404


def assert_upload_interrupted(coord: RunningCoordinator, timeout_s: float) -> None:
    """The coordinator logged the upload as interrupted, kept nothing and still serves."""
    # The log names the test's directory, "interrupted" included: wait for the message.
    message = f"sandbox upload {'ab' * 32} from alice was interrupted"
    deadline = time.monotonic() + timeout_s
    while message not in coord.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert message in coord.log()
    assert leftovers(coord) == []
    assert stored_files(coord) == []
    assert requests.get(f"{coord.url}/health").status_code == 200


def test_interrupted_upload_leaves_nothing_behind(
    start_coordinator: Callable[..., RunningCoordinator],
) -> None:
    coord = start_coordinator()
    host, port = coord.url.removeprefix("http://").split(":")
    token = coord.token()
    head = (
        f"POST /api/v1/sandboxes HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\n{SHA}: {'ab' * 32}\r\n"
        "Content-Length: 1000000\r\n\r\n"
    )
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + os.urandom(300_000))
    assert_upload_interrupted(coord, timeout_s=5)
