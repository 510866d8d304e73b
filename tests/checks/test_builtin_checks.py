"""The built-in checks, run for real on this machine through the runner."""

from __future__ import annotations

import os
import platform as stdlib_platform
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from checks import CheckSource, CheckSpec
from checks.builtin.cgroup import read_limits
from checks.builtin.cores import usable_cores
from checks.builtin.platform import parse_os_release, platform_string
from checks.registry import builtin_checks
from checks.runner import run_checks
from protocol import CheckReport, CheckStatus

EL9_OS_RELEASE = (
    'NAME="AlmaLinux"\nID="almalinux"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n'
)


@pytest.fixture(scope="module")
def builtin_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CheckReport]:
    workdir = tmp_path_factory.mktemp("pilot")
    started = time.monotonic()
    # Other work on a shared test machine must not fail the load check.
    options = {"load": {"fail_per_core": 1000}}
    reports = run_checks(builtin_checks(), workdir=workdir, options=options)
    wall_s = time.monotonic() - started
    # All fourteen run concurrently; generous bound for a shared 2-core machine (~0.5 s idle).
    assert wall_s < 3.0, wall_s
    return {report.name: report for report in reports}


def test_every_builtin_passes_on_this_machine(builtin_reports: dict[str, CheckReport]) -> None:
    assert list(builtin_reports)[:5] == ["python", "platform", "cores", "memory", "disk"]
    assert len(builtin_reports) == 14
    for report in builtin_reports.values():
        # Skip: nothing to check here (no CVMFS, GPU or coordinator configured).
        assert report.status in (CheckStatus.OK, CheckStatus.WARN, CheckStatus.SKIP), report
        assert report.source == "builtin"
        assert report.duration_s > 0


def test_cores_match_affinity_and_cgroup(builtin_reports: dict[str, CheckReport]) -> None:
    report = builtin_reports["cores"]
    affinity = len(os.sched_getaffinity(0))
    expected = usable_cores(affinity, read_limits().cpu_cores, None)
    assert report.facts["cores"] == expected >= 1
    assert report.facts["cores_affinity"] == affinity
    assert 1 <= report.facts["cores_physical"] <= report.facts["cores_logical"]
    if expected > 1:
        assert report.tags == [f"{expected}Processors", "MultiProcessor"]


def test_memory_facts_are_plausible(builtin_reports: dict[str, CheckReport]) -> None:
    facts = builtin_reports["memory"].facts
    assert 0 < facts["memory_available_mb"] <= facts["memory_mb"] <= facts["memory_node_mb"]


def test_disk_facts_are_plausible(builtin_reports: dict[str, CheckReport]) -> None:
    facts = builtin_reports["disk"].facts
    stats = os.statvfs(facts["disk_path"])
    free_mb = stats.f_bavail * stats.f_frsize // (1024 * 1024)
    assert abs(facts["disk_free_mb"] - free_mb) < 512
    assert not [p for p in Path(facts["disk_path"]).iterdir() if "disk-check" in p.name]


def test_platform_and_python_describe_this_machine(
    builtin_reports: dict[str, CheckReport],
) -> None:
    os_release = parse_os_release(Path("/etc/os-release").read_text())
    expected = platform_string(os_release, stdlib_platform.machine())
    assert builtin_reports["platform"].facts["platform"] == expected
    assert builtin_reports["platform"].tags == [expected]
    assert builtin_reports["platform"].facts["kernel"] == os.uname().release
    python = builtin_reports["python"].facts
    assert python["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert python["python_executable"] == sys.executable


def _variant(name: str, module: str) -> CheckSpec:
    return CheckSpec(name, f"checks.builtin.{module}:{module}", source=CheckSource.BUILTIN)


@pytest.fixture(scope="module")
def variant_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CheckReport]:
    """The built-ins under options that must change their verdict, all in one run."""
    tmp = tmp_path_factory.mktemp("variants")
    (tmp / "os-release").write_text(EL9_OS_RELEASE)
    (tmp / "a-file").write_text("")
    huge_mb = 1 << 40
    options: dict[str, dict[str, Any]] = {
        "cores-too-few": {"min_cores": 1 << 20},
        "cores-bad-option": {"min_cores": "many"},
        "memory-too-little": {"min_available_mb": huge_mb, "warn_available_mb": huge_mb},
        "memory-warn": {"min_available_mb": 0, "warn_available_mb": huge_mb},
        "disk-too-little": {"min_free_mb": huge_mb, "warn_free_mb": huge_mb},
        "disk-warn": {"min_free_mb": 0, "warn_free_mb": huge_mb},
        "disk-missing": {"path": str(tmp / "missing")},
        "disk-file": {"path": str(tmp / "a-file")},
        "platform-el9": {"os_release_path": str(tmp / "os-release"), "machine": "amd64"},
        "platform-none": {"os_release_path": str(tmp / "missing")},
        "python-future": {"min_version": "99.0"},
    }
    specs = [_variant(name, name.split("-")[0]) for name in options]
    return {r.name: r for r in run_checks(specs, workdir=tmp, options=options)}


@pytest.mark.parametrize(
    ("name", "status", "message_part"),
    [
        ("cores-too-few", CheckStatus.FAIL, "fewer than min_cores=1048576"),
        ("cores-bad-option", CheckStatus.FAIL, "option min_cores='many' is not a number"),
        ("memory-too-little", CheckStatus.FAIL, "below 1099511627776 MB"),
        ("memory-warn", CheckStatus.WARN, "below 1099511627776 MB"),
        ("disk-too-little", CheckStatus.FAIL, "below 1099511627776 MB"),
        ("disk-warn", CheckStatus.WARN, "below 1099511627776 MB"),
        ("disk-missing", CheckStatus.FAIL, "does not exist"),
        ("disk-file", CheckStatus.FAIL, "is not a directory"),
        ("platform-el9", CheckStatus.OK, "x86_64-el9"),
        ("platform-none", CheckStatus.WARN, "cannot identify the OS"),
        ("python-future", CheckStatus.FAIL, "is older than 99.0"),
    ],
)
def test_options_change_the_verdict(
    variant_reports: dict[str, CheckReport], name: str, status: CheckStatus, message_part: str
) -> None:
    report = variant_reports[name]
    assert report.status is status, report
    assert message_part in report.message


def test_platform_from_an_el9_os_release(variant_reports: dict[str, CheckReport]) -> None:
    facts = variant_reports["platform-el9"].facts
    assert (facts["platform"], facts["os_id"], facts["os_version"]) == (
        "x86_64-el9",
        "almalinux",
        "9.4",
    )
