"""Wall and CPU time of a node-check run: the fork-server runner against one interpreter per check.

    .venv/bin/python -m bench.checks_runner --repeat 5

Three ways to run the same built-in checks in parallel on this machine, alternated within
each repetition so they see the same load:

- ``runner``: ``checks.runner.run_checks`` (one fork server, a forked child per check);
- ``per-check``: the alternative it replaced: a fresh ``python`` per check, each importing
  the checks machinery and running its check (``checks.child.run_request``);
- ``floor``: one bare ``python -c pass`` per check, the least any per-interpreter design pays.

CPU is user+system of all child processes. Prints one JSON object of medians per check set
(the 5 original built-ins, all but ``cpuspeed``, all 14) and the load average before/after.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from bench.harness import (
    child_env,
)
from checks.api import CheckSpec
from checks.registry import builtin_checks
from checks.runner import run_checks

_PER_CHECK = (
    "import json, sys; from pathlib import Path; from checks.child import run_request; "
    "json.dumps(run_request({'ref': sys.argv[1], 'name': sys.argv[2], 'options': {}, "
    "'node_facts': {}, 'workdir': sys.argv[3]}))"
)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _parallel(commands: Sequence[Sequence[str]]) -> None:
    env = child_env()
    procs = [subprocess.Popen(list(c), env=env, stdout=subprocess.DEVNULL) for c in commands]
    for proc in procs:
        proc.wait()


def _measure(run: Callable[[], object]) -> tuple[float, float]:
    cpu_before, wall_before = _children_cpu_s(), time.monotonic()
    run()
    return time.monotonic() - wall_before, _children_cpu_s() - cpu_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gridpilot-bench-checks-") as tmp:
        print(json.dumps(_bench(Path(tmp), args.repeat), indent=2))


def _bench(workdir: Path, repeat: int) -> dict[str, object]:
    specs = builtin_checks()
    sets: dict[str, list[CheckSpec]] = {
        "5 original": specs[:5],
        "13 (no cpuspeed)": [s for s in specs if s.name != "cpuspeed"],
        "all 14": specs,
    }
    ways: dict[str, Callable[[list[CheckSpec]], object]] = {
        "runner": lambda chosen: run_checks(chosen, workdir=workdir),
        "per-check": lambda chosen: _parallel(
            [[sys.executable, "-c", _PER_CHECK, s.ref, s.name, str(workdir)] for s in chosen]
        ),
        "floor": lambda chosen: _parallel([[sys.executable, "-c", "pass"] for _ in chosen]),
    }
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {}
    load_before = os.getloadavg()
    for _ in range(repeat):
        for set_name, chosen in sets.items():
            for way, run in ways.items():
                sample = _measure(functools.partial(run, chosen))
                samples.setdefault(set_name, {}).setdefault(way, []).append(sample)
    result: dict[str, object] = {
        set_name: {
            way: {
                "wall_s": round(statistics.median(s[0] for s in values), 3),
                "cpu_s": round(statistics.median(s[1] for s in values), 3),
            }
            for way, values in by_way.items()
        }
        for set_name, by_way in samples.items()
    }
    result["loadavg_before_after"] = [list(load_before), list(os.getloadavg())]
    return result


if __name__ == "__main__":
    main()
