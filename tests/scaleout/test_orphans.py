"""A test session killed before its teardown (a timeout, SIGKILL) leaves its PostgreSQL
server running, since ``pg_ctl`` daemonises it: the next session stops it."""

from __future__ import annotations

import contextlib
import shutil
import subprocess

import psutil

from tests.services.postgres import OWNER_FILE, PostgresCluster, stop_orphaned_clusters


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait(timeout=10)
    return child.pid


def test_a_cluster_whose_session_died_is_stopped_and_removed() -> None:
    cluster = PostgresCluster()
    live = PostgresCluster()
    try:
        (cluster.base_dir / OWNER_FILE).write_text(f"{_dead_pid()}\n")
        server_pid = cluster.start().pid()
        assert psutil.pid_exists(server_pid)

        removed = stop_orphaned_clusters()

        assert cluster.base_dir in removed
        assert live.base_dir not in removed  # its owner, this session, is alive
        assert not cluster.base_dir.exists()
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(server_pid).wait(timeout=30)
        assert not psutil.pid_exists(server_pid)
    finally:
        if cluster.base_dir.exists():
            cluster.stop("immediate")
            shutil.rmtree(cluster.base_dir, ignore_errors=True)
        shutil.rmtree(live.base_dir, ignore_errors=True)
