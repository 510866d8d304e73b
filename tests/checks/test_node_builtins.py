"""The node built-ins beyond the first five: decisions on real file contents, and real runs."""

from __future__ import annotations

import email.utils
import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checks import CheckSource
from checks.builtin.clock import clock_offset_s, clock_status
from checks.builtin.containers import containers_result
from checks.builtin.cpuspeed import db12_score
from checks.builtin.load import load_status, parse_loadavg
from checks.builtin.userns import read_sysctls, sysctl_verdict, userns_result
from checks.registry import load_ref
from checks.runner import run_checks
from protocol import CheckReport, CheckStatus
from tests.conftest import RunningCoordinator


def _run(
    name: str, tmp_path: Path, options: dict[str, Any] | None = None, **kw: Any
) -> CheckReport:
    spec = load_ref(f"checks.builtin.{name}:{name}", source=CheckSource.BUILTIN)
    [report] = run_checks([spec], workdir=tmp_path, options={name: options or {}}, **kw)
    return report


def test_load_per_core_against_thresholds(tmp_path: Path) -> None:
    assert parse_loadavg("0.52 0.58 0.59 1/467 12345\n") == (0.52, 0.58, 0.59)
    assert load_status(1.0, warn_above=1.5, fail_above=4) is CheckStatus.OK
    assert load_status(2.0, warn_above=1.5, fail_above=4) is CheckStatus.WARN
    assert load_status(4.5, warn_above=1.5, fail_above=4) is CheckStatus.FAIL
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("9.00 7.00 6.00 12/900 4242\n")
    report = _run("load", tmp_path, {"path": str(loadavg), "cores": 2})
    assert report.status is CheckStatus.WARN
    assert report.facts["load_per_core"] == 3.5
    assert report.message == "load 9 7 6 on 2 cores (3.5 per core), above 1.5 per core"
    overloaded = _run("load", tmp_path, {"path": str(loadavg), "cores": 1})
    assert overloaded.status is CheckStatus.FAIL
    assert overloaded.message.endswith("(7 per core), above 4 per core")
    calm = _run("load", tmp_path, {"path": str(loadavg), "cores": 16})
    assert calm.status is CheckStatus.OK and calm.facts["load_per_core"] == 0.438


def test_userns_decision_and_the_real_attempt(tmp_path: Path) -> None:
    sysctl = tmp_path / "proc" / "sys"
    (sysctl / "user").mkdir(parents=True)
    (sysctl / "kernel").mkdir()
    (sysctl / "user" / "max_user_namespaces").write_text("0\n")
    (sysctl / "kernel" / "unprivileged_userns_clone").write_text("1\n")
    values = read_sysctls(tmp_path)
    assert values["max_user_namespaces"] == 0
    assert values["apparmor_restrict_unprivileged_userns"] is None
    assert sysctl_verdict(values) == "user.max_user_namespaces is 0"
    refused = userns_result(values, False, "unshare: operation not permitted")
    assert refused.status is CheckStatus.WARN
    assert refused.message.endswith("user.max_user_namespaces is 0")
    assert userns_result({}, True, "").tags == ("userns",)

    report = _run("userns", tmp_path)
    works = shutil.which("unshare") is not None and (
        subprocess.run(["unshare", "-U", "true"], capture_output=True, check=False).returncode == 0
    )
    assert (report.status is CheckStatus.OK) == works, report.message
    assert ("userns" in report.tags) == works


def test_container_runtimes_really_run(tmp_path: Path) -> None:
    bwrap_works = shutil.which("bwrap") is not None and (
        subprocess.run(
            ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    report = _run("containers", tmp_path)
    assert ("bwrap" in report.tags) == bwrap_works, report.message
    assert ("bwrap" in report.facts["container_runtimes"]) == bwrap_works
    if shutil.which("apptainer") is None:
        required = _run("containers", tmp_path, {"required": ["apptainer"]})
        assert required.status is CheckStatus.FAIL
        assert required.message == "required runtime not working: apptainer: not installed"


def test_container_decision() -> None:
    broken = {"apptainer": (False, "FATAL: no user namespaces"), "bwrap": (True, "exit 0")}
    assert containers_result(broken, []).status is CheckStatus.OK
    assert containers_result(broken, []).tags == ("bwrap",)
    assert containers_result(broken, ["apptainer"]).status is CheckStatus.FAIL
    nothing = containers_result({}, [])
    assert nothing.status is CheckStatus.WARN
    assert nothing.message == (
        "no working container runtime, payloads can only run without isolation "
        "(plain, see docs/reliability.md): none installed"
    )


def test_cvmfs_repositories_on_a_real_tree(tmp_path: Path) -> None:
    root = tmp_path / "cvmfs"
    (root / "atlas.cern.ch" / "repo").mkdir(parents=True)
    (root / "empty.example.org").mkdir()
    options = {"root": str(root), "repositories": ["atlas.cern.ch", "empty.example.org", "lhcb"]}
    report = _run("cvmfs", tmp_path, options)
    assert report.status is CheckStatus.FAIL
    assert report.tags == ["cvmfs:atlas.cern.ch"]
    assert "2 of 3 unusable" in report.message
    assert "empty.example.org: mounted but empty" in report.message
    assert "lhcb: No such file or directory" in report.message
    good = _run("cvmfs", tmp_path, {"root": str(root), "repositories": ["atlas.cern.ch"]})
    assert good.status is CheckStatus.OK
    assert good.facts == {"cvmfs_repositories": ["atlas.cern.ch"]}
    assert _run("cvmfs", tmp_path).status is CheckStatus.SKIP


def test_cpuspeed_is_bounded_and_scored(tmp_path: Path) -> None:
    assert db12_score(12_000_000, 1.0) == 250.0
    assert db12_score(1_200_000, 0.5) == 50.0
    short = _run("cpuspeed", tmp_path, {"duration_s": 0.1})
    assert short.status is CheckStatus.OK
    assert short.facts["db12_score"] > 0
    # It stops after 0.1 s of CPU, or 0.2 s of wall time when other work takes the CPU.
    assert short.facts["db12_cpu_s"] >= 0.1 or short.facts["db12_wall_s"] >= 0.2
    assert short.facts["db12_cpu_s"] < 0.5
    capped = _run("cpuspeed", tmp_path, {"duration_s": 30})
    assert capped.facts["db12_wall_s"] <= 2.2
    assert capped.facts["db12_cpu_s"] < 1.2
    assert capped.duration_s < 3


def test_coordinator_reach_and_clock_against_a_real_coordinator(
    shared_coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    facts = {"coordinator_url": shared_coordinator.url}
    reach = _run("coordinator", tmp_path, node_facts=facts)
    assert reach.status is CheckStatus.OK, reach.message
    assert reach.facts["coordinator_http_status"] == 200
    clock = _run("clock", tmp_path, node_facts=facts)
    assert clock.status is CheckStatus.OK, clock.message
    assert abs(clock.facts["clock_offset_s"]) < 2
    assert _run("coordinator", tmp_path).status is CheckStatus.SKIP
    assert _run("clock", tmp_path).status is CheckStatus.SKIP


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_coordinator_fails(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    report = _run("coordinator", tmp_path, {"url": url, "request_timeout_s": 2})
    assert report.status is CheckStatus.FAIL
    assert report.message.startswith(f"{url}/health unreachable:")


class _SkewedClock(http.server.BaseHTTPRequestHandler):
    skew_s = 600.0

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(time.time() + self.skew_s, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def skewed_server() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _SkewedClock)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_clock_ten_minutes_behind_fails(skewed_server: str, tmp_path: Path) -> None:
    report = _run("clock", tmp_path, {"url": skewed_server})
    assert report.status is CheckStatus.FAIL
    assert 598 <= report.facts["clock_offset_s"] <= 602
    assert report.message.endswith("behind the coordinator, more than 120 s")
    warned = _run("clock", tmp_path, {"url": skewed_server, "fail_offset_s": 900})
    assert warned.status is CheckStatus.WARN


def test_clock_offset_arithmetic() -> None:
    sent = 1_700_000_000.2
    header = email.utils.formatdate(1_700_000_030, usegmt=True)
    assert round(clock_offset_s(header, sent, sent + 0.2), 3) == 30.2
    assert clock_status(-30, warn_s=10, fail_s=120) is CheckStatus.WARN
    with pytest.raises(ValueError):
        clock_offset_s("Mon, 01 Jan 2024 00:00:00", sent, sent)
