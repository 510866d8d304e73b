"""The portal's speed: the Job Monitor's first load and search/summary under many jobs.

    .venv/bin/python -m bench.portal                # page at 100k jobs, search at 1M jobs
    .venv/bin/python -m bench.portal --smoke        # 2k and 20k jobs, for CI
    .venv/bin/python -m bench.portal --sizes 1000000 --no-browser --keep-seeded /tmp/1m
    .venv/bin/python -m bench.portal --sizes 1000000 --no-browser --seeded /tmp/1m

``--keep-seeded DIR`` keeps a copy of the seeded data dir of the last size in DIR;
``--seeded DIR`` measures a copy of such a data dir instead of seeding (one size, the one
it holds: seeding a million jobs takes 6-14 minutes), upgraded to this schema and with
the planner's statistics refreshed.

For each size the jobs are seeded in-process with the coordinator's own submit logic
(``bench/seeding.py``: two owners, 50 requirement groups, 5 sites), then a third of them are
moved to Done and a seventh to Failed with one UPDATE each, the planner's statistics are
refreshed (as the coordinator's sweeper does after 10 s, then hourly) and ``gridpilot
serve`` starts on that data dir. One client then sends each request ``--repeat`` times
over one keep-alive connection (the portal's first page load is one user, not a crowd)
and reports p50 and p99:

- ``GET /health``: the HTTP floor of this server on this machine;
- ``GET /web/jobs``: the Job Monitor's HTML (search page + two summaries rendered), for a
  user (half the jobs) and for an admin (all of them), and the whole page in chromium
  (navigation start to the load event, scripts and charts included) when it is installed;
- ``POST /api/v1/jobs/search`` and ``/summary`` for the monitor's queries and harder ones,
  side by side with the same logic call in-process (``coordinator.logic.search``: the
  database's own time plus SQLAlchemy, no HTTP), so the ratio shows what HTTP adds.

Prints a table and writes ``bench/results/portal.json``.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select, update

from bench import seeding
from bench.harness import arguments, start_coordinator, stop, write_result
from coordinator.logic import search
from coordinator.logic.auth import TokenClaims, issue_token, load_or_create_signing_key
from coordinator.store import revisions
from coordinator.store.database import Database
from coordinator.store.schema import jobs
from protocol import Role

GOAL_PAGE_MS = 300.0
GOAL_SEARCH_P99_MS = 100.0
SERVE_OPTIONS = ("--rate-limit-per-s", "0", "--log-level", "WARNING")


def _name_like(pattern: str, *, monitor: bool = False) -> tuple[str, dict[str, Any]]:
    """A name search as a script sends it, or (``monitor``) as the Job Monitor does: its
    "job name contains" box, Deleted jobs left out, newest first."""
    like = {"parameter": "JobName", "operator": "like", "value": pattern}
    if not monitor:
        return ("search", {"search": [like]})
    not_deleted = {"parameter": "Status", "operator": "neq", "value": "Deleted"}
    return (
        "search",
        {"search": [not_deleted, like], "sort": [{"parameter": "JobID", "direction": "desc"}]},
    )


QUERIES: dict[str, tuple[str, dict[str, Any]]] = {
    "monitor page (25 newest, not Deleted)": (
        "search",
        {
            "search": [{"parameter": "Status", "operator": "neq", "value": "Deleted"}],
            "sort": [{"parameter": "JobID", "direction": "desc"}],
        },
    ),
    "Status = Done, newest": (
        "search",
        {"search": [{"parameter": "Status", "operator": "eq", "value": "Done"}]},
    ),
    "Site in 2 sites, sorted by LastUpdateTime": (
        "search",
        {
            "search": [{"parameter": "Site", "operator": "in", "values": list(seeding.SITES[:2])}],
            "sort": [{"parameter": "LastUpdateTime", "direction": "desc"}],
        },
    ),
    # Names are bench-g<group>-<n>: every job holds the trigrams of "bench-g".
    "JobName like bench-g7-% (prefix, 1 in 50)": _name_like("bench-g7-%"),
    "JobName like %-g8-1% (substring, 1 in 100)": _name_like("%-g8-1%"),
    "JobName like %12345% (substring, 1 in 20,000)": _name_like("%12345%"),
    "monitor: name contains bench-g7- (1 in 50)": _name_like("%bench-g7-%", monitor=True),
    "monitor: name contains 12345 (1 in 20,000)": _name_like("%12345%", monitor=True),
    "summary by Status": ("summary", {"grouping": ["Status"]}),
    "summary by Site, Status": ("summary", {"grouping": ["Site", "Status"]}),
}


def seed(data_dir: Path, total: int) -> float:
    started = time.perf_counter()
    seeding.seed_waiting(data_dir, total)
    db, _settings = seeding.open_database(data_dir)
    try:
        with db.write() as conn:
            conn.execute(update(jobs).where(jobs.c.job_id % 3 == 0).values(status="Done"))
            conn.execute(update(jobs).where(jobs.c.job_id % 7 == 0).values(status="Failed"))
        # What the coordinator's sweeper does 10 s after it starts, then hourly.
        db.analyze()
    finally:
        db.dispose()
    return time.perf_counter() - started


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * p99, 2),
        "max_ms": round(1000 * ordered[-1], 2),
    }


def timed(call: Callable[[], Any], repeat: int) -> dict[str, float]:
    call()  # warm: the first request pays for imports and page-cache misses
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


def session_for(url: str, token: str) -> requests.Session:
    """A browser-like session: the login form, then the cookie."""
    session = requests.Session()
    form = session.get(f"{url}/web/login", timeout=30).text
    nonce = form.split('name="nonce" value="', 1)[1].split('"', 1)[0]
    reply = session.post(
        f"{url}/web/login", data={"token": token, "nonce": nonce}, allow_redirects=False
    )
    assert reply.status_code == 303, reply.text
    return session


def page_in_browser(url: str, token: str, repeat: int) -> dict[str, Any]:
    """Navigation start to the load event of /web/jobs in headless chromium."""
    try:
        from tests.web.browser import CHROMIUM, chromium
    except ImportError:
        return {"skipped": "selenium is not installed"}
    if not Path(CHROMIUM).exists():
        return {"skipped": "chromium is not installed"}
    with tempfile.TemporaryDirectory() as downloads, chromium(Path(downloads)) as driver:
        driver.get(f"{url}/web/login")
        driver.find_element("id", "token").send_keys(token)
        driver.find_element("id", "login-submit").click()
        loads, ready = [], []
        for _ in range(repeat + 1):
            driver.get(f"{url}/web/jobs")
            timing = driver.execute_script(
                "const n = performance.getEntriesByType('navigation')[0];"
                "return [n.domContentLoadedEventEnd - n.startTime, n.loadEventEnd - n.startTime];"
            )
            ready.append(float(timing[0]) / 1000)
            loads.append(float(timing[1]) / 1000)
        # The first visit fetches Chart.js and the monitor's script; later ones have them.
        return {
            "first_visit_load_ms": round(1000 * loads[0], 1),
            "load": percentiles(loads[1:]),
            "dom_ready": percentiles(ready[1:]),
        }


def measure(data_dir: Path, total: int, repeat: int, browser: bool) -> dict[str, Any]:
    key = load_or_create_signing_key(data_dir)
    tokens = {
        "user": issue_token(key, subject="alice", vo=seeding.VO, role=Role.USER, ttl_s=3600),
        "admin": issue_token(key, subject="ops", vo=seeding.VO, role=Role.ADMIN, ttl_s=3600),
    }
    server, url, _pilot_token = start_coordinator(data_dir, *SERVE_OPTIONS)
    result: dict[str, Any] = {"jobs": total, "requests": {}, "in_process": {}}
    try:
        floor = requests.Session()
        result["requests"]["GET /health (floor)"] = timed(
            lambda: floor.get(f"{url}/health").raise_for_status(), repeat
        )
        for role, token in tokens.items():
            session = session_for(url, token)
            result["requests"][f"GET /web/jobs ({role})"] = timed(
                _get(session, f"{url}/web/jobs"), repeat
            )
            api = requests.Session()
            api.headers["Authorization"] = f"Bearer {token}"
            for name, (kind, body) in QUERIES.items():
                path = "/api/v1/jobs/search?per_page=25" if kind == "search" else (
                    "/api/v1/jobs/summary"
                )  # fmt: skip
                result["requests"][f"{name} ({role})"] = timed(
                    _post(api, f"{url}{path}", body), repeat
                )
        if browser:
            result["browser_page_load"] = page_in_browser(url, tokens["user"], min(repeat, 20))
    finally:
        stop(server)
    result["in_process"] = in_process(data_dir, repeat)
    return result


def in_process(data_dir: Path, repeat: int) -> dict[str, Any]:
    """The same searches through the logic layer, without HTTP."""
    db = Database(f"sqlite:///{data_dir / 'gridpilot.db'}")
    found: dict[str, Any] = {}
    try:
        for role in (Role.USER, Role.ADMIN):
            claims = seeding.claims("alice" if role is Role.USER else "ops", role)
            for name, (kind, body) in QUERIES.items():
                found[f"{name} ({role.value})"] = timed(_call(db, claims, kind, body), repeat)
    finally:
        db.dispose()
    return found


def _get(session: requests.Session, url: str) -> Callable[[], None]:
    return lambda: session.get(url).raise_for_status()


def _post(session: requests.Session, url: str, body: dict[str, Any]) -> Callable[[], None]:
    return lambda: session.post(url, json=body).raise_for_status()


def _call(db: Database, claims: TokenClaims, kind: str, body: dict[str, Any]) -> Callable[[], Any]:
    if kind == "search":
        params = _search_params(body)
        return lambda: search.search(db, claims, params, 1, 25)
    summary = search.SummaryParams(grouping=list(body["grouping"]))
    return lambda: search.summary(db, claims, summary)


def _search_params(body: dict[str, Any]) -> search.SearchParams:
    return search.SearchParams(
        search=[search.SearchSpec(**spec) for spec in body.get("search", [])],
        sort=[search.SortSpec(**spec) for spec in body.get("sort", [])],
    )


def report(results: list[dict[str, Any]]) -> None:
    """The table of each size (the goals line once, after the last)."""
    for size in results:
        print(f"\n{size['jobs']:,} jobs (seeded in {size['seed_s']:.0f} s)")
        print(f"{'request':58} {'p50 ms':>8} {'p99 ms':>8} {'in-process p50':>15} {'ratio':>6}")
        for name, figures in size["requests"].items():
            inner = size["in_process"].get(name.replace("(user)", "(user)"), {})
            ratio = figures["p50_ms"] / inner["p50_ms"] if inner.get("p50_ms") else None
            print(
                f"{name:58} {figures['p50_ms']:8.1f} {figures['p99_ms']:8.1f} "
                f"{inner.get('p50_ms', float('nan')):15.1f} "
                f"{'' if ratio is None else f'{ratio:6.2f}'}"
            )
        browser = size.get("browser_page_load", {})
        if "load" in browser:
            for what, label in (("dom_ready", "table shown"), ("load", "charts drawn")):
                print(
                    f"{'/web/jobs in chromium, ' + label + ' (user)':58} "
                    f"{browser[what]['p50_ms']:8.1f} {browser[what]['p99_ms']:8.1f}"
                )
            print(f"{'  first visit, charts drawn':58} {browser['first_visit_load_ms']:8.1f}")
        elif browser:
            print(f"browser page load: {browser.get('skipped')}")
    print(f"goals: first page load < {GOAL_PAGE_MS:.0f} ms at 100k jobs; "
          f"search/summary p99 < {GOAL_SEARCH_P99_MS:.0f} ms at 1M jobs", flush=True)  # fmt: skip


def reuse(seeded: Path, data_dir: Path) -> tuple[int, float]:
    """A copy of a data dir seeded earlier (``--keep-seeded``) in ``data_dir``, at this
    schema, its statistics refreshed: (its jobs, seconds taken)."""
    started = time.perf_counter()
    shutil.copytree(seeded, data_dir, dirs_exist_ok=True)
    db = Database(f"sqlite:///{data_dir / 'gridpilot.db'}")
    try:
        revisions.upgrade(db)
        db.analyze()
        with db.read() as conn:
            total = int(conn.scalar(select(func.count()).select_from(jobs)) or 0)
    finally:
        db.dispose()
    return total, time.perf_counter() - started


def main() -> int:
    parser = arguments(__doc__.splitlines()[0], "small sizes (2k, 20k jobs), for CI", "portal")
    parser.add_argument("--repeat", type=int, default=0, help="requests per measurement")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument(
        "--sizes", default="", help="jobs, comma-separated (default 100000,1000000)"
    )
    parser.add_argument("--keep-seeded", type=Path, metavar="DIR", default=None)
    parser.add_argument("--seeded", type=Path, metavar="DIR", default=None)
    args = parser.parse_args()
    sizes: tuple[int, ...] = (2_000, 20_000) if args.smoke else (100_000, 1_000_000)
    if args.sizes:
        sizes = tuple(int(size) for size in args.sizes.split(","))
    if args.seeded is not None:
        sizes = (0,)  # the size it holds
    repeat = args.repeat or (10 if args.smoke else 100)
    results = []
    for total in sizes:
        with tempfile.TemporaryDirectory(prefix="gridpilot-bench-portal-") as tmp:
            data_dir = Path(tmp)
            if args.seeded is not None:
                total, seed_s = reuse(args.seeded, data_dir)
            else:
                seed_s = seed(data_dir, total)
                if args.keep_seeded is not None and total == sizes[-1]:
                    shutil.copytree(data_dir, args.keep_seeded, dirs_exist_ok=True)
            # The page-load goal is stated at 100k jobs: the browser measures that size.
            browser = not args.no_browser and total == sizes[0]
            measured = measure(data_dir, total, repeat, browser)
            results.append({**measured, "seed_s": round(seed_s, 1)})
            report(results[-1:])  # as each size finishes: the large one takes a while
    write_result(args.output, {"sizes": results, "repeat": repeat})
    return 0


if __name__ == "__main__":
    sys.exit(main())
