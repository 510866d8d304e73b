"""Pilot start-up: from process start to its first job Running, installed pilot vs single file.

    .venv/bin/python -m bench.pilot_startup --runs 20

Starts a coordinator on 127.0.0.1 and builds ``gridpilot-pilot.pyz`` (or takes ``--pyz``).
Each round submits one ``/bin/true`` job, so a job is waiting, then starts a pilot with the
default checks (less any ``--disable-check``) and ``--idle-timeout-s 0`` and waits for it to
exit. The rounds alternate, in a rotating order, between:

- ``installed``: ``python -m pilot pilot ...`` from the venv;
- ``pyz-warm``: ``python -I -S gridpilot-pilot.pyz pilot ...`` in a work dir whose
  extraction cache is already there (every start after a node's first);
- ``pyz-cold``: the same in a fresh work dir (the first start: extraction included);
- ``floor``: ``python -I -S -c`` doing one HTTP request to the coordinator's ``/health``:
  an interpreter start plus a round trip, the least any pilot can take.

All use the same interpreter. "Running" is the job's Running time in the coordinator's
status history (what ``gridpilot logging-info`` shows) minus the moment the process was
started; the pilot's log gives its own phases: checks done and registered.

A second table times ``--version`` (imports and the CLI, no checks), again interleaved: the
pyz with its warm and with a cold cache, the design it replaced (the same modules imported
from inside the zip, only psutil unpacked: zipimport never caches bytecode, so every start
compiles them again), the installed pilot, and the bootstrap's unpacking alone. Prints
medians and p90s with ratios and writes ``bench/results/pilot_startup.json``.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.harness import REPO, arguments, start_coordinator, write_result
from coordinator.logic.auth import issue_token, load_or_create_signing_key
from protocol import API_PREFIX, Role

VARIANTS = ("floor", "installed", "pyz-warm", "pyz-cold")
FLOOR = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/health').read()"
GOAL_S = 1.0
FROM_ZIP = """
import os, sys
pyz, cache = sys.argv.pop(1), sys.argv.pop(1)
sys.path[:0] = [pyz + "/lib", cache + "/arch/" + os.uname().machine]
sys.argv[0] = pyz
os.environ["TYPER_USE_RICH"] = "0"
from pilot.cli import main
main()
"""
"""Runs the pyz's pure-Python modules from inside the zip and only psutil from the cache."""


class Bench:
    """One coordinator, one user, one pyz; runs and times the variants."""

    def __init__(
        self, base: Path, url: str, tokens: tuple[str, str], pyz: Path, disabled: list[str]
    ) -> None:
        self.base, self.url, self.pyz = base, url, pyz
        pilot_token, user_token = tokens
        self.config = base / "pilot.yaml"
        self.config.write_text(json.dumps({"checks": {"disabled": disabled}}))  # JSON is YAML
        self.user_headers = {"Authorization": f"Bearer {user_token}"}
        self.token_file = base / "pilot.token"
        self.token_file.write_text(pilot_token)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        self.runs = 0

    def submit(self) -> int:
        description = {"Executable": "/bin/true", "StdOutput": "StdOut", "StdError": "StdErr"}
        reply = requests.post(
            f"{self.url}{API_PREFIX}/jobs",
            json={"description": json.dumps(description), "format": "json"},
            headers=self.user_headers,
        )
        reply.raise_for_status()
        job_id: int = reply.json()["job_ids"][0]
        return job_id

    def running_at(self, job_id: int) -> float:
        reply = requests.get(
            f"{self.url}{API_PREFIX}/jobs/{job_id}/history", headers=self.user_headers
        )
        reply.raise_for_status()
        (entry,) = [e for e in reply.json()["history"] if e["status"] == "Running"]
        return datetime.datetime.fromisoformat(entry["at"]).timestamp()

    def command(self, variant: str, workdir: Path) -> list[str]:
        if variant == "floor":
            return [sys.executable, "-I", "-S", "-c", FLOOR, self.url]
        head = [sys.executable, "-m", "pilot"]
        if variant.startswith("pyz"):
            head = [sys.executable, "-I", "-S", str(self.pyz)]
        return [
            *head, "pilot", "--url", self.url, "--token-file", str(self.token_file),
            "--workdir", str(workdir), "--idle-timeout-s", "0", "--poll-interval-s", "0.2",
            "--config", str(self.config),
        ]  # fmt: skip

    def workdir(self, variant: str) -> Path:
        self.runs += 1
        if variant == "pyz-cold":
            return self.base / f"cold-{self.runs}"
        return self.base / variant  # reused: the pyz's cache stays warm

    def run(self, variant: str) -> dict[str, float]:
        workdir = self.workdir(variant)
        job_id = 0 if variant == "floor" else self.submit()
        log_size = _size(workdir / "pilot.log")
        started = time.time()
        process = subprocess.run(
            self.command(variant, workdir),
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
        if process.returncode != 0:  # e.g. a fatal check failed: no job ran, no figure
            tail = "\n".join(process.stderr.splitlines()[-10:])
            raise SystemExit(f"{variant}: exited {process.returncode}\n{tail}")
        if variant == "floor":
            return {"running_s": time.time() - started}
        phases = pilot_phases(workdir / "pilot.log", log_size)
        result = {name: at - started for name, at in phases.items()}
        result["running_s"] = self.running_at(job_id) - started
        return result


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def pilot_phases(log: Path, offset: int) -> dict[str, float]:
    """When this run's pilot logged its first check result and its registration."""
    phases: dict[str, float] = {}
    with open(log, encoding="utf-8", errors="replace") as stream:
        stream.seek(offset)
        for line in stream:
            phase = "checks_s" if " pilot.agent: check " in line else None
            if " pilot.agent: registered as pilot " in line:
                phase = "registered_s"
            if phase and phase not in phases:
                # logging's asctime: local time, millisecond resolution.
                at = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                phases[phase] = at.timestamp()
    return phases


def version_starts(base: Path, pyz: Path, runs: int) -> dict[str, dict[str, float]]:
    """``--version`` wall times: warm and cold cache, modules imported from the zip, installed;
    and unpacking alone (in this process: no interpreter start)."""
    (cache,) = (base / "pyz-warm" / ".gridpilot-pyz").iterdir()
    script = base / "from_zip.py"
    script.write_text(FROM_ZIP)
    commands = {
        "pyz-warm": [sys.executable, "-I", "-S", str(pyz)],
        "pyz-cold": [sys.executable, "-I", "-S", str(pyz)],
        "pyz-from-zip": [sys.executable, "-I", "-S", str(script), str(pyz), str(cache)],
        "installed": [sys.executable, "-m", "pilot"],
    }
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in [*commands, "unpack-only"]}
    for index in range(runs):
        fresh = base / f"version-cold-{index}"
        for name, command in commands.items():
            workdir = fresh if name == "pyz-cold" else base / "pyz-warm"
            started = time.perf_counter()
            subprocess.run(
                [*command, "--version"],
                check=True,
                stdout=subprocess.DEVNULL,
                env={**os.environ, "GRIDPILOT_WORKDIR": str(workdir)},
            )
            samples[name].append({"version_s": time.perf_counter() - started})
        samples["unpack-only"].append({"version_s": unpack_s(pyz, base / f"unpack-{index}")})
    return summarise(samples)


def unpack_s(pyz: Path, target: Path) -> float:
    """How long the bootstrap takes to unpack the archive for this machine."""
    spec = importlib.util.spec_from_file_location("bootstrap", REPO / "packaging/pyz/bootstrap.py")
    assert spec is not None and spec.loader is not None
    bootstrap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bootstrap)
    started = time.perf_counter()
    bootstrap._extract(str(pyz), bootstrap.machine_arch(), str(target))
    return time.perf_counter() - started


def build_pyz(base: Path) -> Path:
    output = base / "dist" / "gridpilot-pilot.pyz"
    build = subprocess.run(
        ["bash", str(REPO / "packaging/build-pyz.sh"), str(output)],
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        raise SystemExit(f"building the pyz failed:\n{build.stderr}")
    return output


def summarise(samples: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for variant, runs in samples.items():
        for phase in sorted({p for run in runs for p in run}):
            values = sorted(run[phase] for run in runs if phase in run)
            p90 = values[min(len(values) - 1, round(0.9 * (len(values) - 1)))]
            summary.setdefault(variant, {})[f"{phase}_median"] = round(statistics.median(values), 3)
            summary[variant][f"{phase}_p90"] = round(p90, 3)
    return summary


def measure(base: Path, runs: int, pyz: Path, disabled: list[str]) -> dict[str, Any]:
    load_before = [round(x, 2) for x in os.getloadavg()]
    data_dir = base / "coordinator"
    data_dir.mkdir()
    server, url, pilot_token = start_coordinator(data_dir, "--match-retry-after-s", "0.2")
    try:
        key = load_or_create_signing_key(data_dir)
        user_token = issue_token(key, subject="bench", vo="bench", role=Role.USER, ttl_s=3600)
        bench = Bench(base, url, (pilot_token, user_token), pyz, disabled)
        bench.run("pyz-warm")  # fills the warm work dir's cache; not counted
        bench.run("installed")  # the same for the venv's bytecode
        samples: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
        for round_index in range(runs):
            shift = round_index % len(VARIANTS)
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                samples[variant].append(bench.run(variant))
    finally:
        server.terminate()
        server.wait()
    versions = version_starts(base, pyz, runs)
    summary = summarise(samples)
    floor = summary["floor"]["running_s_median"]
    installed = summary["installed"]["running_s_median"]
    for variant in VARIANTS:
        median = summary[variant]["running_s_median"]
        summary[variant]["ratio_to_floor"] = round(median / floor, 2)
        summary[variant]["ratio_to_installed"] = round(median / installed, 2)
    return {
        "runs": runs,
        "cores": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "pyz_bytes": pyz.stat().st_size,
        "disabled_checks": disabled,
        "goal_running_s": GOAL_S,
        "variants": summary,
        "version": versions,
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"pyz size: {result['pyz_bytes'] / 1024:.0f} KiB; {result['runs']} runs per variant")
    print(
        f"load average before {result['load_average_before']}, after {result['load_average_after']}"
    )
    header = ("variant", "checks done", "registered", "job Running p50", "p90", "x floor", "x inst")
    print("{:<10} {:>12} {:>11} {:>16} {:>7} {:>8} {:>7}".format(*header))
    for variant, row in result["variants"].items():
        print(
            "{:<10} {:>12} {:>11} {:>16} {:>7} {:>8} {:>7}".format(
                variant,
                row.get("checks_s_median", "-"),
                row.get("registered_s_median", "-"),
                row["running_s_median"],
                row["running_s_p90"],
                row["ratio_to_floor"],
                row["ratio_to_installed"],
            )
        )
    versions = result["version"]
    warm = versions["pyz-warm"]["version_s_median"]
    print(f"\n{'--version':<13} {'p50':>6} {'p90':>6} {'x pyz-warm':>11}")
    for name, row in versions.items():
        median = row["version_s_median"]
        print(f"{name:<13} {median:>6} {row['version_s_p90']:>6} {median / warm:>11.2f}")


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], "2 runs per variant (CI)", "pilot_startup")
    parser.add_argument("--runs", type=int, default=20, help="runs per variant [20]")
    parser.add_argument("--pyz", type=Path, help="an already built gridpilot-pilot.pyz")
    parser.add_argument(
        "--disable-check", action="append", default=[], help="leave out a default check"
    )
    args = parser.parse_args()
    runs = 2 if args.smoke else args.runs
    with tempfile.TemporaryDirectory(prefix="gridpilot-startup-") as tmp:
        base = Path(tmp)
        pyz = args.pyz.resolve() if args.pyz else build_pyz(base)
        result = measure(base, runs, pyz, args.disable_check)
    print_table(result)
    write_result(args.output, result)


if __name__ == "__main__":
    main()
