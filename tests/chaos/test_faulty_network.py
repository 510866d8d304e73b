"""Pilots talking to the coordinator through a faulty TCP proxy (issue 12, item 8 and the
chaos suite): connections reset before a request, replies lost after the request was
applied, replies cut half-way, replies delayed. Every job runs once and ends Done with its
live log and its output sandbox byte for byte what it wrote.

Before request ids and retries of cut replies, 1 to 3 of 200 payloads ran twice through
such a proxy, and a cut match reply made the pilot exit 1.
"""

from __future__ import annotations

from tests.chaos.conftest import CHAOS_JOBS, ChaosRun
from tests.chaos.proxy import Faults, FaultyProxy


def test_jobs_run_once_and_arrive_byte_exact_through_a_faulty_network(chaos: ChaosRun) -> None:
    proxy = FaultyProxy(chaos.coordinator.port, Faults(reset=0.15, lost=0.05, cut=0.05))
    try:
        job_ids = chaos.submit(CHAOS_JOBS, lines=300, pause_s=0.2)
        for name in ("first", "second"):
            chaos.start_pilot(chaos.pilot(name, url=proxy.url), idle_timeout_s=8, cores=2)
        chaos.check_exactly_once_and_byte_exact(job_ids, timeout_s=300)
        assert chaos.wait_pilots(timeout_s=120) == [0, 0]
    finally:
        proxy.stop()
    # The network really misbehaved, in every way, many times.
    assert min(proxy.counts[fault] for fault in ("reset", "lost", "cut")) >= 3, proxy.counts
