"""The client's retry policy against a real HTTP server on 127.0.0.1 that misbehaves on cue."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pilot.client import CoordinatorClient, RetryPolicy
from pilot.errors import CoordinatorRejected, CoordinatorUnreachable, PilotOutdated
from protocol import PROTOCOL_HEADER, MatchRequest


class Script:
    """What the server answers, one entry per request: (status, body, headers)."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, dict[str, object], dict[str, str]]] = []
        self.requests: list[dict[str, str]] = []
        self.paths: list[str] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            self.rfile.read(length)
            script.requests.append(dict(self.headers))
            script.paths.append(self.path)
            status, body, headers = script.replies.pop(0)
            data = json.dumps(body).encode()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()


class FakeTime:
    """The clock and sleep at the edge of the machine: no real waiting in tests."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def _client(url: str, fake: FakeTime, max_retry_s: float = 60.0) -> CoordinatorClient:
    return CoordinatorClient(
        url, "tok", retry=RetryPolicy(max_retry_s=max_retry_s), sleep=fake.sleep, clock=fake.clock
    )


def test_5xx_and_429_are_retried_with_growing_backoff(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [
        (503, {}, {}),
        (502, {}, {}),
        (429, {}, {}),
        (200, {"jobs": [], "retry_after_s": 5}, {}),
    ]
    fake = FakeTime()
    reply = _client(url, fake).match("p1", MatchRequest())
    assert reply.retry_after_s == 5
    assert len(script.requests) == 4
    assert len(fake.sleeps) == 3
    assert fake.sleeps[2] > fake.sleeps[0]
    assert script.requests[0]["Authorization"] == "Bearer tok"
    assert script.requests[0][PROTOCOL_HEADER] == "1"


def test_retry_after_header_is_honoured(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [(503, {}, {"Retry-After": "7"}), (200, {"jobs": []}, {})]
    fake = FakeTime()
    _client(url, fake).match("p1", MatchRequest())
    assert fake.sleeps == [7.0]


def test_client_errors_are_not_retried_and_carry_the_error_body(server: tuple[str, Script]) -> None:
    url, script = server
    body = {
        "code": "lease_lost",
        "message": "job 3 belongs to another pilot",
        "details": {"job_id": 3},
    }
    script.replies = [(409, body, {})]
    with pytest.raises(CoordinatorRejected) as caught:
        _client(url, FakeTime()).match("p1", MatchRequest())
    assert (caught.value.status, caught.value.code, caught.value.details) == (
        409,
        "lease_lost",
        {"job_id": 3},
    )
    assert len(script.requests) == 1


def test_426_means_the_pilot_is_outdated(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [(426, {"code": "pilot_too_old", "message": "update", "details": {}}, {})]
    with pytest.raises(PilotOutdated):
        _client(url, FakeTime()).match("p1", MatchRequest())


def test_unreachable_coordinator_gives_up_after_max_retry_s() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fake = FakeTime()
    with pytest.raises(CoordinatorUnreachable, match="connection refused"):
        _client(f"http://127.0.0.1:{port}", fake, max_retry_s=30).match("p1", MatchRequest())
    assert 0 < sum(fake.sleeps) <= 30
    assert len(fake.sleeps) >= 3


@pytest.mark.parametrize("url", ["http://", "ftp://127.0.0.1:1", "127.0.0.1:8080"])
def test_an_unusable_url_is_refused_at_once_not_retried(url: str) -> None:
    """requests' URL errors are ValueErrors, like a reply whose JSON is cut (retried): a
    pilot given a bad URL must say so at once, not retry it for max_retry_s."""
    fake = FakeTime()
    with pytest.raises(CoordinatorUnreachable) as caught:
        _client(url, fake).match("p1", MatchRequest())
    assert caught.value.reason == "not a usable URL"
    assert fake.sleeps == []


def test_the_environments_proxy_decides_every_request_as_in_requests(
    server: tuple[str, Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client reads the proxy settings once per coordinator, not at every request:
    every request still goes through the proxy the environment names, and a host in
    no_proxy is still reached directly."""
    proxy_url, script = server
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", proxy_url)
    coordinator = "http://coordinator.invalid:8000"
    client = CoordinatorClient(coordinator, "tok", retry=RetryPolicy(max_retry_s=0.0))
    for _ in range(2):
        script.replies.append((200, {}, {}))
        client.request("POST", "/pilots/p1/state", json={})
    assert script.paths == [f"{coordinator}/api/v1/pilots/p1/state"] * 2
    assert all(r["Authorization"] == "Bearer tok" for r in script.requests)

    monkeypatch.setenv("no_proxy", "coordinator.invalid")
    direct = CoordinatorClient(coordinator, "tok", retry=RetryPolicy(max_retry_s=0.0))
    with pytest.raises(CoordinatorUnreachable, match="unknown host name"):
        direct.request("POST", "/pilots/p1/state", json={})
    assert len(script.paths) == 2
