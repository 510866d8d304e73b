"""Human table, JSON and Nagios output of check reports."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.report import format_json, format_table, nagios_exit_code, nagios_summary
from protocol import CheckReport, CheckStatus

S = CheckStatus


def _report(name: str, status: CheckStatus, message: str = "", **kw: object) -> CheckReport:
    return CheckReport(name=name, status=status, message=message, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ([S.OK], 0),
        ([S.OK, S.SKIP], 0),
        ([S.SKIP], 0),
        ([S.OK, S.WARN], 1),
        ([S.WARN, S.FAIL], 2),
        ([S.OK, S.TIMEOUT], 2),
        ([S.OK, S.UNKNOWN], 3),
        ([S.WARN, S.UNKNOWN], 3),
        ([S.UNKNOWN, S.FAIL], 2),
        ([S.UNKNOWN, S.TIMEOUT, S.WARN], 2),
        ([], 3),
    ],
)
def test_nagios_exit_code_worst_wins(statuses: list[CheckStatus], code: int) -> None:
    reports = [_report(f"c{i}", status) for i, status in enumerate(statuses)]
    assert nagios_exit_code(reports) == code


@given(st.lists(st.sampled_from(list(CheckStatus)), min_size=1))
def test_exit_code_depends_only_on_the_set_of_statuses(statuses: list[CheckStatus]) -> None:
    reports = [_report(f"c{i}", status) for i, status in enumerate(statuses)]
    code = nagios_exit_code(reports)
    assert code == nagios_exit_code(list(reversed(reports)))
    assert (code == 2) == any(s in (S.FAIL, S.TIMEOUT) for s in statuses)
    assert (code == 0) == all(s in (S.OK, S.SKIP) for s in statuses)


def test_nagios_summary_is_one_line_with_problems_and_perfdata() -> None:
    reports = [
        _report("cores", S.OK, "8 usable cores", duration_s=0.12),
        _report("disk", S.FAIL, "300 MB free in /scratch,\nbelow 1024 MB", duration_s=0.05),
        _report("cvmfs", S.TIMEOUT, "no result | within 10 s", duration_s=10.0),
    ]
    summary = nagios_summary(reports)
    assert "\n" not in summary
    text, perfdata = summary.split(" | ")
    assert text.startswith("CHECKS CRITICAL - 1 ok, 1 fail, 1 timeout")
    assert "disk fail: 300 MB free in /scratch, below 1024 MB" in text
    assert "cvmfs timeout: no result / within 10 s" in text
    assert "cores" not in text.split(";", 1)[1]
    assert perfdata == "'cores'=0.120s 'disk'=0.050s 'cvmfs'=10.000s"


def test_nagios_summary_when_all_is_well_and_when_nothing_ran() -> None:
    assert nagios_summary([_report("cores", S.OK)]).startswith("CHECKS OK - 1 ok |")
    assert nagios_summary([]) == "CHECKS UNKNOWN - no checks run"


def test_table_lists_every_check_aligned_and_marks_fatal() -> None:
    reports = [
        _report("python", S.OK, "CPython 3.11.7", duration_s=0.1),
        _report("disk", S.FAIL, "cannot write in /scratch", duration_s=1.234, fatal=True),
    ]
    lines = format_table(reports).splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "TIME", "MESSAGE"]
    assert lines[1].split(maxsplit=3) == ["python", "OK", "0.10s", "CPython 3.11.7"]
    assert lines[2].split(maxsplit=3) == ["disk", "FAIL*", "1.23s", "cannot write in /scratch"]
    assert lines[1].index("CPython") == lines[2].index("cannot") == lines[0].index("MESSAGE")
    assert lines[3].startswith("* fatal")


def test_json_round_trips_to_reports() -> None:
    reports = [
        _report("cores", S.OK, "2 usable", facts={"cores": 2}, tags=["2Processors"]),
        _report("disk", S.WARN, "low", fatal=True, duration_s=0.5),
    ]
    document = json.loads(format_json(reports))
    assert [CheckReport.from_dict(item) for item in document["checks"]] == reports
    assert document["nagios_exit_code"] == 1
    assert document["summary"] == nagios_summary(reports)
