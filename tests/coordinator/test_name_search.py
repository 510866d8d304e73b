"""``JobName like`` through the name indexes (coordinator/store/name_index.py: trigrams for
any part, a B-tree range for a prefix) finds exactly what reading every job finds: the
same jobs, in the same order, with the same total, under the same access rules, for
patterns with wildcards, escapes, short literals, any case, non-ASCII letters and trigrams
common to most jobs. On SQLite and on PostgreSQL (``--database postgresql``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, func, insert, select, text

from coordinator.errors import BadRequest
from coordinator.logic import search
from coordinator.logic.auth import TokenClaims
from coordinator.store import name_index, revisions
from coordinator.store import search as search_store
from coordinator.store.database import Database
from coordinator.store.schema import jobs, utc_timestamp
from protocol import Role
from tests.conftest import DATABASES

NAMES = [
    "bench-g7-12", "Bench-G7-3", "BENCH-g70-1", "a_b%c", "a\\b", "abc", "ab", "", "x",
    "été-ÉTÉ", 'q"uote', "  two  spaces", "100%", "under_score_job", "UNDER-score",
    "prod-2026-mc-simulation", "Prod-2026-MC-reco", "ümlaut-Ü", "tab\tname",
    "Étoile-1", "étoile-2", "x@y", "xAy", "xay", "x`z", "b\U0010ffffc", "b\U0010ffff",
    "\ud7ffk", "\ue000k", "_lead", "%lead",
]  # fmt: skip
COMMON = 1_500
"""Jobs named ``bench-common-N``: more than ``PROBE_LIMIT`` share its trigrams."""
FRAGMENTS = ["bench", "g7", "-", "G7-", "abc", "b%", "ab", "prod-2026", "mc", "été", "Ü",
             "q\"u", "  ", "score", "common-1", "x", "100", "a", "Étoile", "x@", "X",
             "b\U0010ffff", "\ud7ff", "\\_lead", "\\%l", "bench-common-1"]  # fmt: skip
PIECES = st.one_of(
    st.sampled_from(["%", "_", "\\%", "\\_", "\\\\"]),
    st.sampled_from(FRAGMENTS),
    st.text(alphabet="abcBEG7-_%é ", max_size=3),
)
PATTERNS = st.lists(PIECES, max_size=6).map("".join)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    where = tmp_path_factory.mktemp("name-search")
    url = (
        DATABASES.postgres_url(str(where))
        if DATABASES.is_postgresql
        else f"sqlite:///{Path(where) / 'gridpilot.db'}"
    )
    database = Database(url)
    revisions.check(database)
    now = datetime.now(timezone.utc)
    rows = [
        _job(name, owner, vo, now - timedelta(seconds=len(name)))
        for name in NAMES
        for owner in ("alice", "bob")
        for vo in ("vo1", "vo2")
    ]
    rows += [_job(f"bench-common-{n}", "alice", "vo1", now) for n in range(COMMON)]
    with database.write() as conn:
        conn.execute(insert(jobs), rows)
        if not database.is_sqlite:
            # A few thousand jobs are read faster whole: make the planner take the index
            # (plain_scan takes it away again), or the comparison would compare two scans.
            name = conn.scalar(text("SELECT current_database()"))
            conn.execute(text(f'ALTER DATABASE "{name}" SET enable_seqscan = off'))
    database.engine.dispose()
    yield database
    database.dispose()


def _job(name: str, owner: str, vo: str, at: datetime) -> dict[str, Any]:
    stamp = utc_timestamp(at)
    return {"status": "Waiting", "owner": owner, "vo": vo, "job_name": name,
            "description": "{}", "created_at": stamp, "updated_at": stamp}  # fmt: skip


def claims(role: Role) -> TokenClaims:
    expires = datetime.now(timezone.utc) + timedelta(hours=1)
    return TokenClaims("alice", "vo1", role, "", expires, "test-name-search")


@contextmanager
def plain_scan(conn: Connection) -> Iterator[None]:
    """Without the name index: SQLite is not asked it, PostgreSQL may not use an index."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL enable_bitmapscan = off"))
        conn.execute(text("SET LOCAL enable_indexscan = off"))
    yield


def scanned(db: Database, role: Role, params: search.SearchParams) -> tuple[list[Any], int]:
    query = search.scoped_query(claims(role), params.search)
    sort = [(s.parameter, s.direction == "desc") for s in params.sort]
    with db.read() as conn, plain_scan(conn):
        rows = search_store.search(conn, query, ["JobID", "JobName"], sort, offset=0, limit=5000)
        total = search_store.count(conn, query, ["JobID"], False)
    return [(row["JobID"], row["JobName"]) for row in rows], total


def indexed(db: Database, role: Role, params: search.SearchParams) -> tuple[list[Any], int]:
    page = search.search(db, claims(role), params, 1, 5000)
    return [(row["JobID"], row["JobName"]) for row in page.rows], page.total


def like_regex(pattern: str) -> re.Pattern[str]:
    """What ``LIKE`` means, for ASCII names: ``%``, ``_``, ``\\`` escapes, any case."""
    parts, escaped = [], False
    for char in pattern:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            parts.append({"%": ".*", "_": "."}.get(char, re.escape(char)))
    return re.compile("".join(parts), re.DOTALL | re.IGNORECASE | re.ASCII)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pattern=PATTERNS,
    role=st.sampled_from([Role.USER, Role.ADMIN]),
    sort=st.sampled_from([[], [("JobName", "desc")], [("JobID", "asc")], [("JobID", "desc")]]),
)
def test_indexed_name_search_finds_what_a_scan_finds(
    db: Database, pattern: str, role: Role, sort: list[tuple[str, str]]
) -> None:
    params = search.SearchParams(
        search=[search.SearchSpec("JobName", "like", pattern)],
        sort=[search.SortSpec(name, direction) for name, direction in sort],
    )
    found, total = indexed(db, role, params)
    assert (found, total) == scanned(db, role, params)
    assert total == len(found)
    ascii_found = [name for _id, name in found if name.isascii()]
    expected = [name for _id, name in found_all(db, role) if name.isascii()]
    regex = like_regex(pattern)
    assert sorted(ascii_found) == sorted(n for n in expected if regex.fullmatch(n))


def found_all(db: Database, role: Role) -> list[Any]:
    return indexed(db, role, search.SearchParams())[0]


def test_the_index_narrows_on_the_rare_trigrams(db: Database) -> None:
    """``bench-common-1%``: every job holds the trigrams of ``bench-``; only ``n-1`` and
    ``-1`` ... are rare, and asking for those finds the same jobs as asking for all."""
    if not db.is_sqlite:
        pytest.skip("PostgreSQL's planner asks its GIN index itself")
    with db.read() as conn:
        chosen = name_index.rare_trigrams(conn, "bench-common-1%")
        assert chosen and not {"ben", "enc", "nch", "ch-"} & set(chosen)
        assert name_index.rare_trigrams(conn, "%ab%") == []
    params = search.SearchParams(search=[search.SearchSpec("JobName", "like", "bench-common-1%")])
    found, total = indexed(db, Role.USER, params)
    assert total == len(found) == 1 + 10 + 100 + 500  # 1, 1x, 1xx, 1xxx below 1,500


@pytest.mark.parametrize(
    ("literal", "names"),
    [
        ("a_b%c", ["a_b%c"]),
        ("100%", ["100%"]),
        ("a\\b", ["a\\b"]),
        ("_", ["_lead", "a_b%c", "under_score_job"]),
    ],
)
def test_the_monitor_searches_names_containing_the_text_as_typed(
    db: Database, literal: str, names: list[str]
) -> None:
    """The Job Monitor's "job name contains" escapes what it is given (web/monitor.py)."""
    pattern = f"%{search.like_literal(literal)}%"
    params = search.SearchParams(search=[search.SearchSpec("JobName", "like", pattern)])
    assert sorted({name for _id, name in indexed(db, Role.USER, params)[0]}) == names


def test_a_pattern_ending_in_a_lone_escape_is_refused(db: Database) -> None:
    params = search.SearchParams(search=[search.SearchSpec("JobName", "like", "abc\\")])
    with pytest.raises(BadRequest, match="unfinished escape"):
        search.search(db, claims(Role.USER), params, 1, 25)
    doubled = search.SearchParams(search=[search.SearchSpec("JobName", "like", "a\\\\%")])
    assert [name for _id, name in indexed(db, Role.USER, doubled)[0]] == ["a\\b"]


def test_names_changed_or_deleted_leave_the_index(db: Database) -> None:
    """The triggers keep the index true through an UPDATE and a DELETE of jobs."""
    with db.write() as conn:
        conn.execute(text("UPDATE jobs SET job_name = 'renamed-zzqy' WHERE job_name = 'x'"))
    like = search.SearchParams(search=[search.SearchSpec("JobName", "like", "%zzqy%")])
    assert len(indexed(db, Role.ADMIN, like)[0]) == 4
    with db.write() as conn:
        conn.execute(text("DELETE FROM jobs WHERE job_name = 'renamed-zzqy'"))
    assert indexed(db, Role.ADMIN, like) == ([], 0)


def sql_of(condition: Any, db: Database) -> str:
    return str(condition.compile(dialect=db.engine.dialect))


def test_a_prefix_is_a_range_of_the_names_not_trigrams(db: Database) -> None:
    """``bench-common-1%``: the names from ``bench-common-1`` to ``bench-common-2``
    (ASCII folded) on SQLite, ``lower(job_name) LIKE`` on PostgreSQL: both are the prefix
    indexes' (migration 0007), for admins and, with owner and VO, for users."""
    with db.read() as conn:
        found = name_index.candidates(conn, "Bench-Common-1%")
        assert found is not None and not found.by_trigrams
        assert ("NOCASE" if db.is_sqlite else "lower(jobs.job_name) LIKE lower(") in sql_of(
            found.condition, db
        )
        assert name_index.candidates(conn, "%ab%") is None
        plan = " ".join(
            str(row)
            for role in (Role.USER, Role.ADMIN)
            for row in conn.execute(text(explain(db, role, "bench-common-1%")))
        )
    if db.is_sqlite:
        assert "job_names_owner_prefix" in plan and "job_names_prefix" in plan
    params = search.SearchParams(search=[search.SearchSpec("JobName", "like", "BENCH-COMMON-1%")])
    found_jobs, total = indexed(db, Role.USER, params)
    assert total == len(found_jobs) == 1 + 10 + 100 + 500


def explain(db: Database, role: Role, pattern: str) -> str:
    """SQLite's plan of the count of a name search."""
    query = search.scoped_query(claims(role), [search.SearchSpec("JobName", "like", pattern)])
    with db.read() as conn:
        query = search_store.with_indexes(conn, query)
        statement = search_store._where(conn, select(func.count()).select_from(jobs), query)
    compiled = statement.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True})
    return ("EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN ") + str(compiled)


@pytest.mark.parametrize(
    ("pattern", "ascii_names"),
    [
        ("bench-g7-%", ["Bench-G7-3", "bench-g7-12"]),  # any case
        ("bench-g7%", ["BENCH-g70-1", "Bench-G7-3", "bench-g7-12"]),
        ("BENCH-G7-1_", ["bench-g7-12"]),
        ("a\\_b%", ["a_b%c"]),  # an escaped _ is part of the prefix
        ("a_b%", ["a\\b", "a_b%c"]),  # _ ends it
        ("100\\%", ["100%"]),
        ("100%", ["100%"]),
        ("\\_l%", ["_lead"]),
        ("\\%%", ["%lead"]),
        ("a\\\\%", ["a\\b"]),
        ("x@%", ["x@y"]),  # the range's end, "xA", is "xa" to NOCASE: wider, still exact
        ("x_%", ["x@y", "xAy", "x`z", "xay"]),
        ("under_score%", ["UNDER-score", "under_score_job"]),
        ("under\\-%", ["UNDER-score"]),
    ],
)
def test_prefix_patterns_find_what_like_finds(
    db: Database, pattern: str, ascii_names: list[str]
) -> None:
    params = search.SearchParams(search=[search.SearchSpec("JobName", "like", pattern)])
    found, total = indexed(db, Role.USER, params)
    assert (found, total) == scanned(db, Role.USER, params)
    assert sorted(name for _id, name in found if name.isascii()) == sorted(ascii_names)


@pytest.mark.parametrize(
    ("pattern", "ascii_folded", "all_folded"),
    [
        ("étoile%", ["étoile-2"], ["Étoile-1", "étoile-2"]),
        ("ÉTOILE-_", ["Étoile-1"], ["Étoile-1", "étoile-2"]),
        ("b\U0010ffff%", ["b\U0010ffff", "b\U0010ffffc"], ["b\U0010ffff", "b\U0010ffffc"]),
        ("\ud7ff%", ["\ud7ffk"], ["\ud7ffk"]),  # the range ends at U+E000
        ("ümlaut-ü", [], ["ümlaut-Ü"]),
    ],
)
def test_non_ascii_prefixes_fold_as_like_does(
    db: Database, pattern: str, ascii_folded: list[str], all_folded: list[str]
) -> None:
    """SQLite's LIKE folds ASCII letters; PostgreSQL's ILIKE every letter its ``lower``
    folds (all of them but in the C locale of the tests' cluster)."""
    params = search.SearchParams(search=[search.SearchSpec("JobName", "like", pattern)])
    found, total = indexed(db, Role.ADMIN, params)
    assert (found, total) == scanned(db, Role.ADMIN, params)
    names = sorted({name for _id, name in found})
    assert names == sorted(all_folded if folds_every_letter(db) else ascii_folded)


def folds_every_letter(db: Database) -> bool:
    with db.read() as conn:
        return bool(conn.scalar(text("SELECT lower('É') = 'é'")))


def test_the_end_of_a_prefix_range() -> None:
    assert name_index.after_prefix("bench-g7-") == "bench-g7."
    assert name_index.after_prefix("b\U0010ffff") == "c"
    assert name_index.after_prefix("\U0010ffff\U0010ffff") is None
    assert name_index.after_prefix("\ud7ff") == "\ue000"
    assert name_index.literal_prefix("a\\_b%c") == "a_b"
    assert name_index.literal_prefix("%abc") == ""


def test_a_broad_prefix_gives_way_to_a_rare_trigram(db: Database) -> None:
    """``bench-common-%1499``: more jobs begin with ``bench-common-`` than the limit, and
    ``149`` is rare: the trigrams narrow (SQLite), and find what the range finds."""
    pattern = "bench-common-%1499"
    with db.read() as conn:
        narrow = name_index.candidates(conn, pattern, prefix_limit=100)
        wide = name_index.candidates(conn, pattern)
    assert narrow is not None and wide is not None
    if db.is_sqlite:
        assert narrow.by_trigrams and "MATCH" in sql_of(narrow.condition, db)
        assert not wide.by_trigrams and "NOCASE" in sql_of(wide.condition, db)
    query = search.scoped_query(claims(Role.ADMIN), [search.SearchSpec("JobName", "like", pattern)])
    answers = []
    for narrowing in (narrow, wide):
        with db.read() as conn:
            narrowed = dataclasses.replace(query, narrowing=(narrowing.condition,))
            rows = search_store.search(conn, narrowed, ["JobName"], [], offset=0, limit=100)
            answers.append(([row["JobName"] for row in rows], search_store.count(
                conn, narrowed, ["JobName"], False)))  # fmt: skip
    assert answers[0] == answers[1] == (["bench-common-1499"], 1)


@pytest.mark.parametrize("pattern", ["%common-1%", "bench-common-1%", "%Common-149_"])
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_pages_of_an_indexed_search_and_past_its_end(
    db: Database, pattern: str, direction: str
) -> None:
    """Trigram and prefix searches page like a scan, each page with the whole total, and a
    page past the end is empty with the total still given; with "not Deleted" too (the
    monitor's: the candidates are read from the table, page and total in one pass)."""
    for extra in ([], [search.SearchSpec("Status", "neq", "Deleted")]):
        params = search.SearchParams(
            search=[*extra, search.SearchSpec("JobName", "like", pattern)],
            sort=[search.SortSpec("JobID", direction)],
        )
        everything, total = scanned(db, Role.USER, params)
        assert total > 7
        for page in (1, 2, total // 7 + 1):
            found = search.search(db, claims(Role.USER), params, page, 7)
            rows = [(row["JobID"], row["JobName"]) for row in found.rows]
            assert (rows, found.total) == (everything[(page - 1) * 7 : page * 7], total)
        past = search.search(db, claims(Role.USER), params, total // 7 + 2, 7)
        assert (past.rows, past.total) == ([], total)
