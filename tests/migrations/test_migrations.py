"""Schema revisions: a fresh database gets exactly ``schema.py``'s schema through the
migrations, a data dir made by release 0.1.0 upgrades with ``gridpilot db upgrade`` and
serves what it held, and a coordinator refuses a schema that is not its own."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, insert, text

from coordinator.logic import search
from coordinator.logic.auth import TokenClaims
from coordinator.store import revisions, rollup
from coordinator.store.database import Database
from coordinator.store.schema import jobs
from protocol import Role
from tests.conftest import DATABASES, REPO_ROOT, launch_coordinator
from tests.coordinator.pilot_calls import FakePilot, User

RELEASE_0_1_0 = Path(__file__).with_name("datadir-0.1.0")
PREFIX_INDEXES = ["job_names_owner_prefix", "job_names_prefix"]
NAME_INDEX_OBJECTS = {
    True: ["job_names", "job_names_config", "job_names_data", "job_names_idx", *PREFIX_INDEXES],
    False: [*PREFIX_INDEXES, "job_names_trgm"],
}
"""The name index's objects by dialect (SQLite or not): 0006's trigrams, 0007's prefixes."""


def gridpilot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coordinator", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def serve_once(data_dir: Path, *database: str) -> subprocess.CompletedProcess[str]:
    """``gridpilot serve`` that is expected to refuse to start (a deadline if it does not)."""
    return gridpilot("serve", "--data-dir", str(data_dir), "--port", "0", *database)


def empty_database(tmp_path: Path) -> Database:
    if DATABASES.is_postgresql:
        return Database(DATABASES.postgres_url(str(tmp_path), empty=True))
    return Database(f"sqlite:///{tmp_path / 'gridpilot.db'}")


def test_migrations_build_the_schema_the_code_declares(tmp_path: Path) -> None:
    db = empty_database(tmp_path)
    try:
        revisions.check(db)
        with db.read() as conn:
            assert revisions.current(conn) == revisions.head()
            assert revisions.schema_differences(conn) == []
            # Not declared in schema.py (left out of the comparison above): made by 0006
            # and 0007.
            assert revisions.name_index_objects(conn) == NAME_INDEX_OBJECTS[db.is_sqlite]
    finally:
        db.dispose()


def test_schema_differences_finds_a_missing_column(tmp_path: Path) -> None:
    """The comparison above can fail: a column dropped behind the migrations' back shows."""
    db = empty_database(tmp_path)
    try:
        revisions.check(db)
        with db.write() as conn:
            conn.execute(text("ALTER TABLE pilots DROP COLUMN refuse_reason"))
        with db.read() as conn:
            found = revisions.schema_differences(conn)
        [(kind, _schema, table, column)] = found
        assert (kind, table, getattr(column, "name", None)) == (
            "add_column",
            "pilots",
            "refuse_reason",
        )
    finally:
        db.dispose()


def test_every_revision_upgrades_from_the_one_before(tmp_path: Path) -> None:
    """Stop at each revision in turn, then go on to the head: each step runs on its own."""
    db = empty_database(tmp_path)
    scripts = list(
        reversed(
            list(revisions.ScriptDirectory.from_config(revisions.alembic_config()).walk_revisions())
        )
    )
    try:
        for script in scripts:
            with db.write() as conn:
                command.upgrade(revisions.alembic_config(conn), script.revision)
            with db.read() as conn:
                assert revisions.current(conn) == script.revision
        with db.read() as conn:
            assert revisions.schema_differences(conn) == []
    finally:
        db.dispose()


@pytest.mark.sqlite_only
def test_release_0_1_0_data_dir_upgrades_and_serves_what_it_held(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(RELEASE_0_1_0, data_dir)
    manifest = json.loads((data_dir / "manifest.json").read_text())

    refused = serve_once(data_dir)
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert "the database schema is from release 0.1.0 (before migrations)" in line
    assert "run `gridpilot db upgrade`" in line

    upgraded = gridpilot("db", "upgrade", "--data-dir", str(data_dir))
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == (
        f"database schema upgraded from release 0.1.0 (before migrations) to {revisions.head()}"
    )
    again = gridpilot("db", "upgrade", "--data-dir", str(data_dir))
    assert again.stdout.strip() == f"database schema already at revision {revisions.head()}"
    db = Database(f"sqlite:///{data_dir / 'gridpilot.db'}")
    try:
        with db.read() as conn:
            assert revisions.schema_differences(conn) == []
    finally:
        db.dispose()

    coord = launch_coordinator(data_dir)
    try:
        vo = manifest["vo"]
        alice = User(coord, vo)
        done = alice.job(manifest["done_job"])
        assert (done["status"], done["output_sandbox"]) == ("Done", manifest["output_sha256"])
        statuses = [alice.job(job_id)["status"] for job_id in manifest["waiting_jobs"]]
        assert statuses == ["Waiting"] * 3
        output = alice.get(f"/sandboxes/{manifest['output_sha256']}")
        assert hashlib.sha256(output.content).hexdigest() == manifest["output_bytes_sha256"]
        log = alice.get(f"/jobs/{manifest['done_job']}/logs/stdout")
        assert log.content.decode() == manifest["stdout"]
        # The release's signing key still signs, its revocations still hold, its task
        # queues still match: a pilot gets the waiting jobs.
        assert FakePilot(coord, vo).match(3) == manifest["waiting_jobs"]
        admin = User(coord, vo, subject="ops", role="admin")
        revoked = admin.get("/tokens/revoked").json()["revoked"]
        assert [entry["token_id"] for entry in revoked] == [manifest["revoked_token"]]
    finally:
        coord.process.terminate()
        coord.process.wait(timeout=30)
    assert "Traceback" not in coord.log()


def test_an_older_revision_is_refused_until_upgraded(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db = empty_database(tmp_path)
    url = ["--database-url", db.url]
    try:
        with db.write() as conn:
            command.upgrade(revisions.alembic_config(conn), revisions.BASELINE)
    finally:
        db.dispose()
    refused = serve_once(data_dir, *url)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"gridpilot: the database schema is at revision {revisions.BASELINE}, this coordinator "
        f"needs {revisions.head()}: run `gridpilot db upgrade` (with the same "
        "--data-dir/--database-url) first"
    )
    revision = gridpilot("db", "revision", "--data-dir", str(data_dir), *url)
    assert revision.stdout.split() == [
        "database:",
        revisions.BASELINE,
        "this",
        "release:",
        revisions.head(),
    ]
    assert gridpilot("db", "upgrade", "--data-dir", str(data_dir), *url).returncode == 0
    coord = launch_coordinator(data_dir, database_url=db.url)
    coord.process.terminate()
    coord.process.wait(timeout=30)


def test_a_newer_revision_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db = empty_database(tmp_path)
    try:
        revisions.check(db)
        with db.write() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    finally:
        db.dispose()
    refused = serve_once(data_dir, "--database-url", db.url)
    assert refused.returncode == 2
    assert "revision ffff, which this coordinator does not know" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_an_unreachable_or_unknown_database_is_one_line(tmp_path: Path) -> None:
    unreachable = serve_once(
        tmp_path, "--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/none"
    )
    assert unreachable.returncode == 2
    [line] = unreachable.stderr.strip().splitlines()
    assert line.startswith("gridpilot: cannot reach the database postgresql+psycopg://nobody@")
    unknown = serve_once(tmp_path, "--database-url", "mysql://db/gridpilot")
    assert unknown.returncode == 2
    assert "unsupported database URL" in unknown.stderr


ROLLUP_ROWS = (
    "SELECT vo, owner, owner_group, site, status, job_group, {n} FROM {table} {where}"
    "GROUP BY vo, owner, owner_group, site, status, job_group ORDER BY 1, 2, 3, 4, 5, 6"
)


ROLLUP_TABLE = (
    "(SELECT vo, owner, owner_group, site, status, job_group, n FROM job_counts UNION ALL "
    "SELECT vo, owner, owner_group, site, status, job_group, n FROM job_count_deltas) AS c"
)


def rollup_is_true(conn: Connection, table: str = ROLLUP_TABLE) -> bool:
    """The counts (with PostgreSQL's deltas not yet folded) are those of the jobs."""
    kept = conn.execute(text(ROLLUP_ROWS.format(n="SUM(n)", table=table, where=""))).all()
    counted = conn.execute(text(ROLLUP_ROWS.format(n="COUNT(*)", table="jobs", where=""))).all()
    return [row for row in kept if row[-1]] == counted


def names_found(db: Database, pattern: str) -> list[str]:
    admin = TokenClaims("ops", "vo1", Role.ADMIN, "", datetime.now(timezone.utc) +
                        timedelta(hours=1), "test")  # fmt: skip
    params = search.SearchParams(["JobName"], [search.SearchSpec("JobName", "like", pattern)])
    return sorted(row["JobName"] for row in search.search(db, admin, params, 1, 1000).rows)


def test_0006_indexes_the_jobs_already_there_and_keeps_counting(tmp_path: Path) -> None:
    """Jobs written at 0005 are found by name and counted in ``job_counts`` after the
    upgrade (on PostgreSQL the rollup starts there), and stay so through later changes."""
    db = empty_database(tmp_path)
    stamp = "2026-12-01T00:00:00+00:00"
    rows = [{"status": status, "owner": owner, "vo": "vo1", "job_name": f"scan-{n}-{owner}",
             "description": "{}", "created_at": stamp, "updated_at": stamp}
            for n, status in enumerate(["Waiting", "Done", "Failed"] * 4)
            for owner in ("alice", "bob")]  # fmt: skip
    try:
        with db.write() as conn:
            command.upgrade(revisions.alembic_config(conn), "0005")
            conn.execute(insert(jobs), rows)
        with db.write() as conn:
            command.upgrade(revisions.alembic_config(conn), "head")
        with db.read() as conn:
            assert rollup_is_true(conn)
        assert names_found(db, "%n-1%") == sorted(
            f"scan-{n}-{owner}" for n in (1, 10, 11) for owner in ("alice", "bob")
        )
        with db.write() as conn:
            conn.execute(text("UPDATE jobs SET status = 'Killed', job_name = 'renamed' "
                              "WHERE job_name LIKE 'scan-1%'"))  # fmt: skip
            conn.execute(text("DELETE FROM jobs WHERE job_name LIKE 'scan-2%'"))
            conn.execute(insert(jobs), rows[:2])
        with db.read() as conn:
            assert rollup_is_true(conn)
        with db.write() as conn:
            folded = rollup.compact(conn)
        with db.read() as conn:
            # Folded: job_counts alone is true, the deltas are gone (SQLite has none).
            assert rollup_is_true(conn, "job_counts")
            assert conn.execute(text("SELECT COUNT(*) FROM job_count_deltas")).scalar() == 0
        # 6 jobs killed: a -1 and a +1 each; 2 keys deleted from, 2 inserted into.
        assert folded == (0 if db.is_sqlite else 6 * 2 + 2 + 2)
        assert names_found(db, "%n-1%") == []
        assert names_found(db, "%NAMED%") == ["renamed"] * 6
        assert names_found(db, "scan-0-%") == ["scan-0-alice", "scan-0-alice", "scan-0-bob",
                                               "scan-0-bob"]  # fmt: skip
    finally:
        db.dispose()


def test_0007_indexes_the_names_already_there_by_prefix_and_downgrades(tmp_path: Path) -> None:
    """Jobs written at 0006 are found by prefix through 0007's indexes after the upgrade;
    a downgrade to 0006 drops just those indexes, and the searches still answer."""
    db = empty_database(tmp_path)
    stamp = "2026-12-01T00:00:00+00:00"
    names = ["scan-1", "SCAN-2", "scan_3", "scanner", "other-scan-4", "Étude-5", "étude-6"]
    rows = [{"status": "Waiting", "owner": "alice", "vo": "vo1", "job_name": name,
             "description": "{}", "created_at": stamp, "updated_at": stamp}
            for name in names]  # fmt: skip
    expected = {"scan-%": ["SCAN-2", "scan-1"], "scan\\_%": ["scan_3"], "étude%": ["étude-6"]}
    try:
        with db.write() as conn:
            command.upgrade(revisions.alembic_config(conn), "0006")
            conn.execute(insert(jobs), rows)
            if conn.scalar(text("SELECT lower('É') = 'é'")):  # not SQLite nor C locale
                expected["étude%"] = ["Étude-5", "étude-6"]
        for target in ("head", "0006", "head"):
            with db.write() as conn:
                migrate = command.upgrade if target == "head" else command.downgrade
                migrate(revisions.alembic_config(conn), target)
            with db.read() as conn:
                found = revisions.name_index_objects(conn)
            if target == "head":
                assert found == NAME_INDEX_OBJECTS[db.is_sqlite]
            else:
                assert not set(PREFIX_INDEXES) & set(found)
            for pattern, names_matching in expected.items():
                assert names_found(db, pattern) == names_matching, (target, pattern)
        with db.read() as conn:
            assert revisions.schema_differences(conn) == []
    finally:
        db.dispose()
