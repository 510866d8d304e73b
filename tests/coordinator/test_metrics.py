"""``/metrics``: valid Prometheus text exposition whose values follow the jobs."""

from __future__ import annotations

import re
from collections.abc import Callable

import requests

from tests.conftest import RunningCoordinator
from tests.coordinator.matching_calls import match, register_pilot, report, submit_jobs

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
VALUE = r"(?:NaN|[+-]Inf|-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
SAMPLE = re.compile(rf"({NAME})(\{{{LABEL}(?:,{LABEL})*\}})? ({VALUE})")
HELP = re.compile(rf"# HELP ({NAME}) .+")
TYPE = re.compile(rf"# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

Samples = dict[str, float]
"""``name{labels}`` -> value."""


def parse(page: str) -> Samples:
    """Parse the exposition strictly: every line is HELP, TYPE or a sample of a declared
    family; counters end in ``_total``; histogram buckets are cumulative."""
    assert page.endswith("\n")
    types: dict[str, str] = {}
    samples: Samples = {}
    for line in page.splitlines():
        if TYPE.fullmatch(line):
            name, kind = TYPE.fullmatch(line).groups()  # type: ignore[union-attr]
            assert name not in types, f"family declared twice: {line}"
            assert kind != "counter" or name.endswith("_total"), line
            types[name] = kind
            continue
        if HELP.fullmatch(line):
            continue
        sample = SAMPLE.fullmatch(line)
        assert sample, f"not a valid exposition line: {line!r}"
        name, labels, value = sample.groups()
        family = _family(name, types)
        assert family in types, f"sample before its TYPE line: {line}"
        key = name + (labels or "")
        assert key not in samples, f"duplicate sample: {line}"
        samples[key] = float(value)
    _check_histograms(types, samples)
    return samples


def _family(name: str, types: dict[str, str]) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[: -len(suffix)]
        if name.endswith(suffix) and types.get(base) == "histogram":
            return base
    return name


def _check_histograms(types: dict[str, str], samples: Samples) -> None:
    for name in (n for n, kind in types.items() if kind == "histogram"):
        buckets = [(k, v) for k, v in samples.items() if k.startswith(f"{name}_bucket{{")]
        counts = [v for _k, v in buckets]
        assert counts == sorted(counts), f"{name} buckets are not cumulative"
        assert buckets[-1][0].endswith('le="+Inf"}')
        assert counts[-1] == samples[f"{name}_count"]


def scrape(coord: RunningCoordinator, **headers: str) -> Samples:
    reply = requests.get(f"{coord.url}/metrics", headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(reply.text)


def test_the_page_parses_and_has_every_family(shared_coordinator: RunningCoordinator) -> None:
    samples = scrape(shared_coordinator)
    for name in (
        "gridpilot_match_requests_total",
        "gridpilot_jobs_matched_total",
        "gridpilot_match_duration_seconds_count",
        "gridpilot_heartbeats_total",
        "gridpilot_heartbeat_lag_max_seconds",
    ):
        assert any(key.split("{")[0] == name for key in samples), name


def test_values_follow_the_jobs(shared_coordinator: RunningCoordinator, vo: str) -> None:
    coord = shared_coordinator
    jobs = f'gridpilot_jobs{{vo="{vo}",status="%s"}}'
    before = scrape(coord)
    submit_jobs(coord, vo, copies=3)
    after_submit = scrape(coord)
    assert after_submit[jobs % "Waiting"] == 3
    assert after_submit[f'gridpilot_task_queues{{vo="{vo}"}}'] == 1

    pilot = register_pilot(coord, vo)
    first, second = (job["job_id"] for job in match(coord, pilot, n=2, cores_free=2))
    report(coord, pilot, first, "Running")
    beat = requests.post(
        coord.api(f"/jobs/{first}/heartbeat"),
        json={"cpu_s": 1.0},
        headers={**coord.headers(pilot[1]), "X-Gridpilot-Pilot": pilot[0]},
    )
    assert beat.status_code == 200, beat.text
    now = scrape(coord)
    assert (now[jobs % "Waiting"], now[jobs % "Matched"], now[jobs % "Running"]) == (1, 1, 1)
    assert now[f'gridpilot_pilots{{vo="{vo}"}}'] == 1
    grew: Callable[[str], float] = lambda key: now[key] - before[key]  # noqa: E731
    assert grew("gridpilot_jobs_matched_total") == 2
    assert grew('gridpilot_match_requests_total{result="matched"}') == 1
    assert grew("gridpilot_match_duration_seconds_count") == 1
    assert grew("gridpilot_heartbeats_total") == 1
    assert 0 <= now["gridpilot_heartbeat_lag_max_seconds"] < 10
    assert now['gridpilot_heartbeat_lag_jobs{le="10.0"}'] >= 1

    assert len(match(coord, register_pilot(coord, vo), n=5, cores_free=5)) == 1
    report(coord, pilot, first, "Done")
    report(coord, pilot, second, "Running")
    report(coord, pilot, second, "Done")
    done = scrape(coord)
    counts = [done[jobs % status] for status in ("Done", "Running", "Matched", "Waiting")]
    assert counts == [2, 0, 1, 0]  # the third job is with the second pilot
    assert done[f'gridpilot_pilots{{vo="{vo}"}}'] == 2


def test_an_empty_match_is_counted(shared_coordinator: RunningCoordinator, vo: str) -> None:
    before = scrape(shared_coordinator)
    assert match(shared_coordinator, register_pilot(shared_coordinator, vo)) == []
    after = scrape(shared_coordinator)
    key = 'gridpilot_match_requests_total{result="empty"}'
    assert after[key] - before[key] == 1
    assert after["gridpilot_jobs_matched_total"] == before["gridpilot_jobs_matched_total"]


def test_admin_only_metrics(start_coordinator: Callable[..., RunningCoordinator]) -> None:
    coord = start_coordinator(metrics_access="admin")
    assert requests.get(f"{coord.url}/metrics").status_code == 401
    user = coord.headers(coord.token(role="user"))
    assert requests.get(f"{coord.url}/metrics", headers=user).status_code == 403
    admin = coord.headers(coord.token(role="admin"))
    parse(requests.get(f"{coord.url}/metrics", headers=admin).text)


def test_label_values_are_escaped(shared_coordinator: RunningCoordinator) -> None:
    odd_vo = 'quote"back\\slash'
    submit_jobs(shared_coordinator, odd_vo)
    samples = scrape(shared_coordinator)
    assert samples['gridpilot_jobs{vo="quote\\"back\\\\slash",status="Waiting"}'] == 1
