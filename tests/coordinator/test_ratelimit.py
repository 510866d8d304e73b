"""Requests per token: the token buckets alone (fake clock), then a real coordinator with a
tight limit answering 429 with ``Retry-After``, and the pilot client riding it out."""

from __future__ import annotations

import time
from collections.abc import Callable

import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.logic.ratelimit import TokenBuckets
from pilot.client import CoordinatorClient, RetryPolicy
from protocol import PROTOCOL_HEADER, PROTOCOL_VERSION
from tests.conftest import RunningCoordinator


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@settings(max_examples=200, deadline=None)
@given(
    rate_per_s=st.floats(0.1, 100),
    burst=st.integers(1, 50),
    gaps_s=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_never_more_than_burst_plus_rate_times_elapsed(
    rate_per_s: float, burst: int, gaps_s: list[float]
) -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate_per_s, burst, clock=clock)
    allowed = 0
    for gap_s in gaps_s:
        clock.now_s += gap_s
        allowed += buckets.wait_s("t") == 0.0
    assert allowed <= burst + rate_per_s * sum(gaps_s) + 1e-6


@settings(max_examples=100, deadline=None)
@given(rate_per_s=st.floats(0.1, 100), burst=st.integers(1, 50))
def test_waiting_the_answered_time_is_enough(rate_per_s: float, burst: int) -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate_per_s, burst, clock=clock)
    for _ in range(burst):
        assert buckets.wait_s("t") == 0.0
    wait_s = buckets.wait_s("t")
    assert 0 < wait_s <= 1 / rate_per_s + 1e-9
    clock.now_s += wait_s
    assert buckets.wait_s("t") == 0.0


def test_keys_are_counted_apart_and_zero_rate_is_off() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(1.0, 2, clock=clock)
    assert [buckets.wait_s("a") for _ in range(3)][2] > 0
    assert buckets.wait_s("b") == 0.0
    off = TokenBuckets(0.0, 1, clock=clock)
    assert all(off.wait_s("a") == 0.0 for _ in range(1000))


def test_idle_buckets_are_forgotten_past_the_key_limit() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(10.0, 5, clock=clock, max_buckets=10)
    for n in range(10):
        buckets.wait_s(f"old-{n}")
    clock.now_s += 1.0  # everyone refilled: 5 requests at 10/s
    buckets.wait_s("new")
    assert buckets.wait_s("old-0") == 0.0
    assert len(buckets._buckets) <= 2


def _get(c: RunningCoordinator, token: str, path: str = "/jobs") -> requests.Response:
    return requests.get(c.api(path), headers=c.headers(token), timeout=10)


def test_a_token_over_its_rate_gets_429_with_retry_after(
    start_coordinator: Callable[..., RunningCoordinator],
) -> None:
    c = start_coordinator(rate_limit_per_s=2, rate_limit_burst=3)
    token = c.token()
    assert [_get(c, token).status_code for _ in range(3)] == [200, 200, 200]
    refused = _get(c, token)
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 0 < refused.json()["details"]["retry_after_s"] <= 0.5
    assert refused.headers["Retry-After"] == "1"
    # Another token of the same user has its own bucket; health needs no token at all.
    assert _get(c, c.token()).status_code == 200
    assert requests.get(f"{c.url}/health", timeout=10).status_code == 200
    time.sleep(float(refused.headers["Retry-After"]))
    assert _get(c, token).status_code == 200


def test_pilots_sharing_a_factory_token_are_counted_apart(
    start_coordinator: Callable[..., RunningCoordinator],
) -> None:
    c = start_coordinator(rate_limit_per_s=0.5, rate_limit_burst=2)
    token = c.token("pilot", subject="factory")
    answers = {}
    for pilot_id in ("pilot-a", "pilot-b"):
        url = c.api(f"/pilots/{pilot_id}/match")
        answers[pilot_id] = [
            requests.post(url, json={}, headers=c.headers(token), timeout=10).status_code
            for _ in range(3)
        ]
    # Each pilot's first two requests pass the limiter (then 404: never registered).
    assert answers == {"pilot-a": [404, 404, 429], "pilot-b": [404, 404, 429]}


def test_the_client_waits_out_429_and_gets_through(
    start_coordinator: Callable[..., RunningCoordinator],
) -> None:
    c = start_coordinator(rate_limit_per_s=4, rate_limit_burst=2)
    client = CoordinatorClient(c.url, c.token(), retry=RetryPolicy(max_retry_s=30))
    started = time.monotonic()
    for _ in range(5):
        assert client.request("GET", "/jobs", params={"ids": ""}).json()["jobs"] == []
    # Two from the burst, then three more: at least one Retry-After wait of a second.
    assert time.monotonic() - started >= 1.0


def test_requests_without_a_valid_token_are_not_rate_counted(
    start_coordinator: Callable[..., RunningCoordinator],
) -> None:
    c = start_coordinator(rate_limit_per_s=0.1, rate_limit_burst=1)
    headers = {"Authorization": "Bearer forged.token", PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
    for _ in range(5):
        assert requests.get(c.api("/jobs"), headers=headers, timeout=10).status_code == 401
    assert _get(c, c.token()).status_code == 200
