"""The ways to add a check: an installed plugin and a config ref (scripts: test_scripts)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from checks import CheckSource
from checks.config import parse_checks_config
from checks.discovery import discover, entry_point_checks
from checks.runner import run_checks
from protocol import CheckReport, CheckStatus
from tests.checks.conftest import WriteModule


def _by_name(reports: list[CheckReport]) -> dict[str, CheckReport]:
    return {report.name: report for report in reports}


@pytest.mark.slow
def test_an_installed_plugin_is_discovered_through_its_entry_points(
    plugin_dir: Path, tmp_path: Path
) -> None:
    assert not [s for s in entry_point_checks() if s.name.startswith("example-")]
    config = parse_checks_config(
        {
            "search_path": [str(plugin_dir)],
            "options": {
                "example-software-area": {"path": str(tmp_path)},
                "example-environment": {"required": ["VO_SOFTWARE_DIR_NOT_SET"]},
            },
        }
    )
    specs = {spec.name: spec for spec in discover(config)}
    area, environment = specs["example-software-area"], specs["example-environment"]
    assert area.source is CheckSource.ENTRYPOINT
    assert area.origin == "gridpilot-example-checks 1.0.0"
    assert area.ref == "gridpilot_example_checks.probes:software_area"
    (tmp_path / "release-1").mkdir()
    reports = _by_name(
        run_checks(
            [area, environment],
            workdir=tmp_path,
            options=config.options,
            search_path=config.search_path,
        )
    )
    assert reports["example-software-area"].status is CheckStatus.OK
    assert reports["example-software-area"].tags == ["VO-software"]
    assert reports["example-software-area"].facts == {"software_entries": 1}
    assert reports["example-software-area"].source == "entrypoint"
    assert reports["example-environment"].status is CheckStatus.WARN
    assert "VO_SOFTWARE_DIR_NOT_SET" in reports["example-environment"].message


def test_a_broken_entry_point_is_reported_not_dropped(tmp_path: Path) -> None:
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[gridpilot.checks]\nnot-a-ref = just_a_module\nbad name = mod:fn\n"
        "missing = no_such_module_here:fn\n"
    )
    specs = {s.name: s for s in entry_point_checks([tmp_path]) if s.origin.startswith("broken")}
    assert set(specs) == {"not-a-ref", "bad_name", "missing"}
    reports = _by_name(run_checks(list(specs.values()), workdir=tmp_path))
    assert reports["not-a-ref"].status is CheckStatus.FAIL
    assert "'just_a_module' is not of the form 'module:function'" in reports["not-a-ref"].message
    assert reports["bad_name"].status is CheckStatus.FAIL
    assert "check name 'bad name'" in reports["bad_name"].message
    assert reports["missing"].status is CheckStatus.FAIL
    assert "No module named 'no_such_module_here'" in reports["missing"].message


def test_config_refs_are_imported_only_in_the_child_under_the_deadline(
    search_dir: Path, write_module: WriteModule
) -> None:
    good = write_module(
        """
        @check("scratch", fatal=True)
        def scratch(ctx: CheckContext) -> CheckResult:
            return CheckResult(Status.OK, "scratch ok", facts={"min_gb": ctx.options["min_gb"]})
        """
    )
    hangs = write_module(
        """
        time.sleep(3600)  # a dead mount on import
        """
    )
    raises = write_module("raise RuntimeError('site module is broken')\n")
    plain = write_module("def not_a_check(ctx):\n    return None\n")
    config = parse_checks_config(
        {
            "search_path": [str(search_dir)],
            "refs": {
                "scratch": f"{good}:scratch",
                "hangs": f"{hangs}:anything",
                "raises": f"{raises}:anything",
                "plain": f"{plain}:not_a_check",
            },
            "settings": {"hangs": {"timeout_s": 0.5}, "scratch": {"fatal": True}},
            "options": {"scratch": {"min_gb": 10}},
        }
    )
    started = time.monotonic()
    specs = [s for s in discover(config) if s.source is CheckSource.CONFIG]
    # Importing the hanging module here would take an hour.
    assert time.monotonic() - started < 3.0
    assert hangs not in sys.modules and good not in sys.modules
    assert [s.name for s in specs] == ["scratch", "hangs", "raises", "plain"]
    reports = _by_name(
        run_checks(
            specs, workdir=search_dir, options=config.options, search_path=config.search_path
        )
    )
    assert time.monotonic() - started < 8.0
    assert reports["scratch"].status is CheckStatus.OK and reports["scratch"].fatal
    assert reports["scratch"].facts == {"min_gb": 10}
    assert reports["hangs"].status is CheckStatus.TIMEOUT
    assert reports["raises"].status is CheckStatus.FAIL
    assert "RuntimeError: site module is broken" in reports["raises"].message
    assert reports["plain"].status is CheckStatus.FAIL
    assert "not decorated with @check()" in reports["plain"].message
    assert {r.source for r in reports.values()} == {"config"}


def test_a_ref_named_like_a_builtin_is_a_named_duplicate(
    search_dir: Path, write_module: WriteModule
) -> None:
    module = write_module(
        """
        @check("disk")
        def disk(ctx: CheckContext) -> CheckResult:
            return CheckResult(Status.OK)
        """
    )
    config = parse_checks_config(
        {"search_path": [str(search_dir)], "refs": {"disk": f"{module}:disk"}}
    )
    specs = [s for s in discover(config) if s.name == "disk"]
    assert [s.source for s in specs] == [CheckSource.BUILTIN, CheckSource.CONFIG]
    builtin, duplicate = run_checks(specs, workdir=search_dir, search_path=config.search_path)
    assert builtin.status in (CheckStatus.OK, CheckStatus.WARN)
    assert duplicate.status is CheckStatus.FAIL
    assert duplicate.message.startswith(f"duplicate check name 'disk': {module}:disk (config)")
    assert "checks.builtin.disk:disk (builtin)" in duplicate.message
