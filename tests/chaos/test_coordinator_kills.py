"""The coordinator SIGKILLed again and again during a bulk run (issue 12, "the suite that
keeps it so"): no job lost, none run twice, none Done without having run, logs and outputs
byte for byte. Replies lost in the kills are answered again from the request ids."""

from __future__ import annotations

import random
import time

from tests.chaos.conftest import CHAOS_JOBS, CHAOS_KILLS, ChaosRun


def test_bulk_run_survives_coordinator_sigkills(chaos: ChaosRun) -> None:
    job_ids = chaos.submit(CHAOS_JOBS, lines=40, pause_s=0.3)
    for name in ("first", "second", "third"):
        chaos.start_pilot(chaos.pilot(name), idle_timeout_s=8, cores=2)
    schedule = random.Random(7)
    for _ in range(CHAOS_KILLS):
        time.sleep(schedule.uniform(1.0, 3.0))
        chaos.coordinator.kill()
        time.sleep(schedule.uniform(0.2, 1.5))  # pilots retry meanwhile
        chaos.coordinator.restart()
    chaos.check_exactly_once_and_byte_exact(job_ids, timeout_s=240)
    assert chaos.wait_pilots(timeout_s=120) == [0, 0, 0]
    assert chaos.coordinator.kills == CHAOS_KILLS
