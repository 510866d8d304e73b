"""Replies cut on the wire are retried (issue 12, item 8): a real TCP server on 127.0.0.1
that answers with a status line and headers, then closes half-way through the body.

Before, ``requests``' ``ChunkedEncodingError`` escaped the client: the pilot exited in
``match``, lost final reports and started payloads without a confirmed Running.
"""

from __future__ import annotations

import hashlib
import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilot.client import CoordinatorClient, RetryPolicy
from pilot.errors import CoordinatorUnreachable
from protocol import JobStatus, JobStatusUpdate, MatchRequest

CUT_LENGTH = "cut: a Content-Length body closed early"
CUT_CHUNKED = "cut: a chunked body closed before its last chunk"
GARBLED = "garbled: a complete reply whose JSON is cut"
OK = "ok"


class Script:
    def __init__(self) -> None:
        self.replies: list[tuple[str, bytes]] = []
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()


def _respond(handler: socketserver.StreamRequestHandler, how: str, body: bytes) -> None:
    out = handler.wfile
    if how == CUT_CHUNKED:
        out.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        out.write(b"Transfer-Encoding: chunked\r\n\r\n")
        out.write(b"%x\r\n%s\r\n" % (len(body) // 2, body[: len(body) // 2]))
        return  # no terminating chunk: the connection closes
    sent = body[: len(body) // 2] if how in (CUT_LENGTH, GARBLED) else body
    length = len(body) if how == CUT_LENGTH else len(sent)
    out.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n")
    out.write(b"Content-Length: %d\r\n\r\n" % length)
    out.write(sent)


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            headers = {}
            self.rfile.readline()
            while (line := self.rfile.readline().strip()) != b"":
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = self.rfile.read(int(headers.get("content-length", "0")))
            with script.lock:
                script.bodies.append(body)
                how, reply = script.replies.pop(0)
            _respond(self, how, reply)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()
    httpd.server_close()


def client(url: str) -> CoordinatorClient:
    sleeps: list[float] = []
    return CoordinatorClient(
        url, "tok", timeout_s=5, retry=RetryPolicy(max_retry_s=60), sleep=sleeps.append
    )


MATCHED = json.dumps({"jobs": [{"job_id": 7, "executable": "/bin/true"}]}).encode()


@pytest.mark.parametrize("how", [CUT_LENGTH, CUT_CHUNKED, GARBLED])
def test_cut_match_reply_is_retried_with_the_same_request_id(
    server: tuple[str, Script], how: str
) -> None:
    url, script = server
    script.replies = [(how, MATCHED), (how, MATCHED), (OK, MATCHED)]
    reply = client(url).match("p1", MatchRequest(request_id="match-42"))
    assert [job.job_id for job in reply.jobs] == [7]
    sent = [json.loads(body) for body in script.bodies]
    assert [body["request_id"] for body in sent] == ["match-42"] * 3


def test_cut_status_reply_is_retried_not_raised(server: tuple[str, Script]) -> None:
    url, script = server
    info = json.dumps({"job_id": 7, "status": "Running"}).encode()
    script.replies = [(CUT_CHUNKED, info), (OK, info)]
    update = JobStatusUpdate(status=JobStatus.RUNNING, request_id="start-7")
    assert client(url).update_status("p1", 7, update).status is JobStatus.RUNNING
    assert len(script.bodies) == 2


def test_download_cut_half_way_is_fetched_again_whole(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    url, script = server
    data = bytes(range(256)) * 4096
    digest = hashlib.sha256(data).hexdigest()
    script.replies = [(CUT_LENGTH, data), (OK, data)]
    dest = tmp_path / "sandbox.tar.gz"
    client(url).download_sandbox(digest, dest)
    assert dest.read_bytes() == data


def test_replies_cut_for_ever_end_as_unreachable(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [(CUT_LENGTH, MATCHED)] * 50
    with pytest.raises(CoordinatorUnreachable, match="ChunkedEncodingError"):
        CoordinatorClient(
            url, "tok", timeout_s=5, retry=RetryPolicy(max_retry_s=3, first_delay_s=0.01)
        ).match("p1", MatchRequest())


def test_exit_deadline_bounds_every_request(server: tuple[str, Script]) -> None:
    url, _ = server
    now = [100.0]
    bounded = CoordinatorClient(
        url, "tok", retry=RetryPolicy(max_retry_s=300), clock=lambda: now[0]
    )
    bounded.exit_within(5.0)
    now[0] += 6.0  # the deadline has passed: nothing is sent any more
    with pytest.raises(CoordinatorUnreachable, match="the pilot is exiting"):
        bounded.match("p1", MatchRequest())
