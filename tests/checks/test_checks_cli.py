"""``gridpilot checks run`` / ``checks list`` as a site admin runs them: real subprocesses."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import RunningCoordinator


def _gridpilot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pilot", "checks", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def _probe(directory: Path, name: str, code: int, summary: str) -> None:
    path = directory / name
    path.write_text(f'#!/bin/sh\necho "{summary}"\necho probe_fact=42\nexit {code}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site's config dir: a pilot.yaml with a probes dir next to it."""
    (tmp_path / "probes").mkdir()
    (tmp_path / "pilot.yaml").write_text(
        "checks:\n  script_dirs: [probes]\n  settings:\n    load: {timeout_s: 7, interval_s: 60}\n"
    )
    return tmp_path


@pytest.mark.parametrize(
    ("code", "state"), [(0, "OK"), (1, "WARNING"), (2, "CRITICAL"), (3, "UNKNOWN")]
)
def test_the_exit_code_and_nagios_line_follow_the_worst_check(
    site: Path, code: int, state: str
) -> None:
    _probe(site / "probes", "site_probe.sh", code, f"PROBE says {code}")
    done = _gridpilot(
        "run",
        "--config",
        "pilot.yaml",
        "--format",
        "nagios",
        "--only",
        "site_probe",
        "--only",
        "python",
        cwd=site,
    )
    assert done.returncode == code, done.stderr
    [line] = done.stdout.splitlines()
    assert line.startswith(f"CHECKS {state} - ")
    assert ("site_probe" in line.split("|")[0]) == (code != 0)
    assert "'site_probe'=" in line and "'python'=" in line


def test_json_output_carries_facts_sources_and_the_exit_code(site: Path) -> None:
    _probe(site / "probes", "scratch.sh", 1, "SCRATCH WARNING - 8 GB")
    done = _gridpilot(
        "run",
        "--config",
        "pilot.yaml",
        "--format",
        "json",
        "--only",
        "scratch",
        "--only",
        "cores",
        "--workdir",
        str(site),
        cwd=site,
    )
    document = json.loads(done.stdout)
    assert done.returncode == 1 == document["nagios_exit_code"]
    checks = {c["name"]: c for c in document["checks"]}
    assert set(checks) == {"scratch", "cores"}
    assert checks["scratch"]["source"] == "script"
    assert checks["scratch"]["facts"] == {"probe_fact": 42}
    assert checks["cores"]["source"] == "builtin" and checks["cores"]["fatal"] is True


def test_the_table_without_a_config_runs_every_builtin_quickly(tmp_path: Path) -> None:
    started = time.monotonic()
    done = _gridpilot("run", "--workdir", str(tmp_path), cwd=tmp_path)
    wall_s = time.monotonic() - started
    table = [line.split() for line in done.stdout.splitlines()[1:] if line and line[0] != "*"]
    statuses = {row[1].rstrip("*") for row in table}
    worst = next(
        code
        for code, among in ((2, {"FAIL", "TIMEOUT"}), (3, {"UNKNOWN"}), (1, {"WARN"}), (0, None))
        if among is None or statuses & among
    )
    assert done.returncode == worst, done.stdout + done.stderr
    rows = [row[0] for row in table]
    assert rows == [
        "python",
        "platform",
        "cores",
        "memory",
        "disk",
        "load",
        "timeleft",
        "userns",
        "containers",
        "cvmfs",
        "gpu",
        "cpuspeed",
        "coordinator",
        "clock",
    ]
    # Interpreter start, discovery and all 14 checks in parallel on a shared 2-core box.
    assert wall_s < 6.0, wall_s


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("run", "--only", "no-such-check"), "no check named no-such-check; known: clock, "),
        (("run", "--config", "bad.yaml"), "checks.settings.disk.fatal: must be true or false"),
        (("run", "--format", "xml", "--only", "python"), "unknown format 'xml'"),
        (("list", "--config", "bad.yaml"), "checks.settings.disk.fatal: must be true or false"),
    ],
)
def test_usage_errors_are_nagios_unknown_and_name_the_problem(
    site: Path, args: tuple[str, ...], complaint: str
) -> None:
    (site / "bad.yaml").write_text("checks:\n  settings:\n    disk: {fatal: maybe}\n")
    done = _gridpilot(*args, cwd=site)
    assert done.returncode == 3
    assert complaint in done.stderr
    assert done.stdout == ""


@pytest.mark.slow
def test_list_shows_every_check_and_where_it_comes_from(site: Path, plugin_dir: Path) -> None:
    _probe(site / "probes", "scratch.sh", 0, "ok")
    (site / "probes" / "README").write_text("not a probe")
    (site / "pilot.yaml").write_text(
        "checks:\n"
        f"  search_path: [{plugin_dir}]\n"
        "  script_dirs: [probes]\n"
        "  refs: {scratch_ref: site_checks:scratch}\n"
        "  disabled: [gpu]\n"
        "  settings: {load: {fatal: true, timeout_s: 7, interval_s: 60}}\n"
    )
    done = _gridpilot("list", "--config", "pilot.yaml", cwd=site)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:]}
    assert "gpu" not in rows
    assert rows["load"][:4] == ["load", "yes", "7s", "60s"]
    assert rows["disk"][1:] == ["yes", "10s", "300s", "builtin", "checks.builtin.disk:disk"]
    assert rows["example-environment"][4:] == ["entrypoint:gridpilot-example-checks", "1.0.0"]
    assert rows["scratch_ref"][4:] == ["config", "ref", "site_checks:scratch"]
    assert rows["scratch"][4:] == ["script", str(site / "probes" / "scratch.sh")]


def test_url_lets_the_coordinator_and_clock_checks_reach_it(
    shared_coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    args = ("run", "--only", "coordinator", "--only", "clock", "--format", "json")
    done = _gridpilot(*args, "--url", shared_coordinator.url, cwd=tmp_path)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert done.returncode == 0, done.stdout
    assert checks["coordinator"]["facts"]["coordinator_http_status"] == 200
    assert abs(checks["clock"]["facts"]["clock_offset_s"]) < 2
    skipped = json.loads(_gridpilot(*args, cwd=tmp_path).stdout)["checks"]
    assert [c["status"] for c in skipped] == ["skip", "skip"]


def test_checks_run_warns_when_plain_is_the_only_runtime(tmp_path: Path) -> None:
    """Issue 12, item 4: a node where no container runtime is found (here: none on PATH)
    is told that payloads would run without isolation."""
    python = Path(sys.executable)
    result = subprocess.run(
        [str(python), "-m", "pilot", "checks", "run", "--only", "containers", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={"PATH": str(tmp_path)},  # neither bwrap nor apptainer can be found
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr  # Nagios WARNING
    (containers,) = json.loads(result.stdout)["checks"]
    assert containers["status"] == "warn"
    assert "payloads can only run without isolation (plain" in containers["message"]
