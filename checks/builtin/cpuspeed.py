"""A short DB12-like CPU speed score: fact ``db12_score``.

Like DIRAC's DB12, it times a Python loop of Gaussian random numbers in CPU seconds and
scales it so that 12 million iterations in one CPU second score 250. It runs for a fixed
CPU-time budget (default 0.25 s, at most 1 s) instead of a fixed count, so a slow node
costs no more time than a fast one. Scores compare nodes running the same Python; they
are not published DB12 values.
"""

from __future__ import annotations

import random
import time

from checks.api import CheckContext, CheckResult, check
from checks.builtin.thresholds import number_option
from protocol import CheckStatus

REFERENCE_ITERATIONS = 12_000_000
REFERENCE_SCORE = 250.0
MAX_BUDGET_S = 1.0
_CHUNK = 10_000


def db12_score(iterations: int, cpu_s: float) -> float:
    """The score of ``iterations`` loop turns that took ``cpu_s`` CPU seconds."""
    if iterations <= 0 or cpu_s <= 0:
        raise ValueError("a score needs iterations and CPU time > 0")
    return REFERENCE_SCORE * (iterations / REFERENCE_ITERATIONS) / cpu_s


def run_benchmark(budget_s: float) -> tuple[int, float, float]:
    """Loop until ``budget_s`` of CPU (or twice that of wall time) is spent.

    Returns (iterations, CPU seconds, wall seconds).
    """
    rng = random.Random(12345)
    total = total_sq = 0.0
    iterations = 0
    cpu_start, wall_start = time.process_time(), time.monotonic()
    while True:
        for _ in range(_CHUNK):
            value = rng.normalvariate(10.0, 1.0)
            total += value
            total_sq += value * value
        iterations += _CHUNK
        cpu_s = time.process_time() - cpu_start
        wall_s = time.monotonic() - wall_start
        # A node busy with other work gives us little CPU: stop on wall time too.
        if cpu_s >= budget_s or wall_s >= 2 * budget_s:
            return iterations, cpu_s, wall_s


@check("cpuspeed", timeout_s=5.0)
def cpuspeed(ctx: CheckContext) -> CheckResult:
    budget_s = min(number_option(ctx.options, "duration_s", 0.25), MAX_BUDGET_S)
    warn_below = number_option(ctx.options, "warn_below", 0.0)
    iterations, cpu_s, wall_s = run_benchmark(budget_s)
    if cpu_s <= 0:
        return CheckResult(CheckStatus.UNKNOWN, "the benchmark got no measurable CPU time")
    score = round(db12_score(iterations, cpu_s), 2)
    facts = {"db12_score": score, "db12_cpu_s": round(cpu_s, 3), "db12_wall_s": round(wall_s, 3)}
    message = f"DB12-like score {score:g} ({iterations} iterations in {cpu_s:.2f} CPU s)"
    if score < warn_below:
        return CheckResult(CheckStatus.WARN, message + f", below {warn_below:g}", facts)
    return CheckResult(CheckStatus.OK, message, facts)
