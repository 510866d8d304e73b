"""Large sandbox uploads read from the socket (``coordinator.api.socketupload``), against a
real coordinator: the same answers as FastAPI's route, and nothing kept from a bad one."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path

import requests

from pilot.client import CoordinatorClient, RetryPolicy
from tests.conftest import RunningCoordinator
from tests.coordinator.test_api_sandboxes import (
    SHA,
    assert_upload_interrupted,
    download,
    leftovers,
    stored_files,
    upload,
)
from tests.coordinator.test_hotpath import served_by_hot_path

LARGE = 3 * 1024 * 1024 + 5
"""Over the lane's 1 MiB threshold, and not a whole number of its 1 MiB buffers."""


def raw_request(coord: RunningCoordinator, head: str, body: bytes) -> socket.socket:
    host, port = coord.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(head.encode() + body)
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (the lane always does)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_large_upload_is_stored_and_answered_as_fastapi_would(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    token = coord.token(vo=vo)
    data = os.urandom(LARGE)
    digest = hashlib.sha256(data).hexdigest()
    before = served_by_hot_path(coord, "sandbox_upload")

    first = upload(coord, token, data)
    assert first.status_code == 201, first.text
    assert first.json() == {"sha256": digest, "size_bytes": LARGE}
    assert first.headers["connection"] == "close"
    again = upload(coord, token, data)  # identical: hashed, not stored twice
    assert (again.status_code, again.json()) == (200, first.json())
    assert served_by_hot_path(coord, "sandbox_upload") == before + 2
    assert (coord.data_dir / "sandboxes" / digest[:2] / digest).read_bytes() == data
    assert download(coord, token, digest).content == data
    assert leftovers(coord) == []


def test_the_pilots_client_uploads_through_the_lane_and_carries_on(
    shared_coordinator: RunningCoordinator, vo: str, tmp_path: Path
) -> None:
    """The lane closes the connection after its answer: the client's next calls open a new
    one, the session keeps working."""
    coord = shared_coordinator
    client = CoordinatorClient(coord.url, coord.token(vo=vo))
    archive, fetched = tmp_path / "out.tar", tmp_path / "back.tar"
    archive.write_bytes(os.urandom(LARGE))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    for _ in range(2):
        client.upload_sandbox(archive, digest)
        client.download_sandbox(digest, fetched)
        assert fetched.read_bytes() == archive.read_bytes()


def test_a_body_that_does_not_hash_to_its_digest_keeps_nothing(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    coord = shared_coordinator
    token = coord.token(vo=vo)
    before = stored_files(coord)
    data = os.urandom(LARGE)
    claimed = hashlib.sha256(b"something else").hexdigest()
    reply = upload(coord, token, data, sha256=claimed)
    assert reply.status_code == 422
    error = reply.json()
    assert (error["code"], error["details"]["actual"]) == (
        "checksum_mismatch",
        hashlib.sha256(data).hexdigest(),
    )
    assert stored_files(coord) == before
    assert leftovers(coord) == []


def test_checks_come_before_the_body(shared_coordinator: RunningCoordinator) -> None:
    coord = shared_coordinator
    data = os.urandom(LARGE)
    digest = hashlib.sha256(data).hexdigest()
    headers = {SHA: digest, "Content-Type": "application/octet-stream"}
    unauthenticated = requests.post(coord.api("/sandboxes"), data=data, headers=headers)
    assert (unauthenticated.status_code, unauthenticated.json()["code"]) == (
        401,
        "unauthenticated",
    )
    no_digest = requests.post(
        coord.api("/sandboxes"), data=data, headers=coord.headers(coord.token())
    )
    assert (no_digest.status_code, no_digest.json()["code"]) == (400, "bad_request")


def test_an_upload_over_the_limit_is_refused(
    start_coordinator: Callable[..., RunningCoordinator],
) -> None:
    coord = start_coordinator(max_sandbox_bytes=2 * 1024 * 1024)
    reply = upload(coord, coord.token(), os.urandom(LARGE))
    assert (reply.status_code, reply.json()["code"]) == (413, "too_large")
    assert reply.json()["details"] == {"max_bytes": 2 * 1024 * 1024, "size_bytes": LARGE}
    assert stored_files(coord) == [] and leftovers(coord) == []


def test_expect_100_continue_is_answered(shared_coordinator: RunningCoordinator) -> None:
    """curl asks before sending a large body; the lane says go on, then stores it."""
    coord = shared_coordinator
    data = os.urandom(LARGE)
    digest = hashlib.sha256(data).hexdigest()
    head = (
        f"POST /api/v1/sandboxes HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {coord.token()}\r\n{SHA}: {digest}\r\n"
        f"Content-Length: {LARGE}\r\nExpect: 100-continue\r\n\r\n"
    )
    with raw_request(coord, head, b"") as sock:
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(data)
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 201 ")
    assert (coord.data_dir / "sandboxes" / digest[:2] / digest).read_bytes() == data


def test_an_interrupted_upload_leaves_nothing_behind(
    start_coordinator: Callable[..., RunningCoordinator],
) -> None:
    coord = start_coordinator()
    token = coord.token()
    head = (
        f"POST /api/v1/sandboxes HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\n{SHA}: {'ab' * 32}\r\n"
        f"Content-Length: {8 * 1024 * 1024}\r\n\r\n"
    )
    with raw_request(coord, head, os.urandom(3 * 1024 * 1024)):
        time.sleep(0.2)  # let the lane take the connection before it closes
    assert_upload_interrupted(coord, timeout_s=10)


def test_parallel_uploads_each_get_their_own_bytes(
    shared_coordinator: RunningCoordinator, vo: str
) -> None:
    """More uploads at once than the lane takes: the rest go through FastAPI's route."""
    from concurrent.futures import ThreadPoolExecutor

    coord = shared_coordinator
    token = coord.token(vo=vo)
    bodies = [os.urandom(LARGE + i) for i in range(12)]

    def one(data: bytes) -> requests.Response:
        return upload(coord, token, data)

    with ThreadPoolExecutor(12) as pool:
        replies: Iterator[requests.Response] = pool.map(one, bodies)
        for data, reply in zip(bodies, replies):
            digest = hashlib.sha256(data).hexdigest()
            assert reply.status_code == 201, reply.text
            assert (coord.data_dir / "sandboxes" / digest[:2] / digest).read_bytes() == data
    assert leftovers(coord) == []


FUTURE_UVICORN = '''\
"""uvicorn as a later release might be: its own httptools module, with the request cycle's
``waiting_for_100_continue`` renamed (uvicorn works as before; the lane's name is gone)."""
import importlib.util
import re
import sys

import uvicorn.protocols.http

NAME = "uvicorn.protocols.http.httptools_impl"
spec = importlib.util.find_spec(NAME)
source = re.sub(r"\\bwaiting_for_100_continue\\b", "expects_continue", spec.loader.get_source(NAME))
module = importlib.util.module_from_spec(spec)
sys.modules[NAME] = module
exec(compile(source, spec.origin, "exec"), module.__dict__)
'''


def test_a_uvicorn_without_what_the_lane_reads_gets_uploads_through_fastapi(
    start_coordinator: Callable[..., RunningCoordinator], tmp_path: Path
) -> None:
    """The lane reads private attributes of uvicorn's request cycle. A coordinator running on
    a uvicorn that renamed one (here uvicorn's own code, rewritten as it starts: a real
    server, not a stand-in object) says so once in its log, naming uvicorn's version, and
    every upload goes through FastAPI's route instead: stored, answered as usual."""
    site = tmp_path / "future-uvicorn"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FUTURE_UVICORN)
    coord = start_coordinator(env={"PYTHONPATH": str(site)})
    client = CoordinatorClient(coord.url, coord.token(), retry=RetryPolicy(max_retry_s=5))
    archive = tmp_path / "large.tar"
    for size in (LARGE, LARGE + 1):
        archive.write_bytes(os.urandom(size))
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        client.upload_sandbox(archive, digest)
        assert (coord.data_dir / "sandboxes" / digest[:2] / digest).read_bytes() == (
            archive.read_bytes()
        )
    client.close()
    assert served_by_hot_path(coord, "sandbox_upload") == 0
    warnings = [line for line in coord.log().splitlines() if "upload lane is off" in line]
    assert len(warnings) == 1, coord.log()
    assert f"uvicorn {version('uvicorn')}" in warnings[0]
    assert "waiting_for_100_continue" in warnings[0]
