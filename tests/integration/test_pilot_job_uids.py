"""A root pilot giving each job a uid of its own (issue 12, item 4), end to end: a real
coordinator, a real ``gridpilot pilot`` process as root with ``payload_uids``, a plain
payload that tries to reach what the pilot keeps. It runs as its own uid in its own 0700
job dir, may pass through the pilot's work dir to it but neither list that dir nor open the
pilot's log, the spool (an older pilot's, left open) or the token file (written 0644 by
the site, made the pilot's alone at start). Needs root (CI runs as root)."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol import Role
from tests.integration.conftest import Pilot, User

UIDS = "61040-61041"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching uids needs root")


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A pilot root the job uids can traverse (pytest's tmp dirs are root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="gridpilot-job-uids-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", "--", str(path)], check=True, timeout=60)


def payload(token_file: Path) -> str:
    """Each probe prints what it got; ``2>&1`` keeps the refusals' messages out of it."""
    probes = [
        "id -u",
        "stat -c '%a %u' .",
        "ls .. >/dev/null 2>&1 && echo workdir-listed || echo workdir-refused",
        "cat ../pilot.log >/dev/null 2>&1 && echo log-read || echo log-refused",
        "ls ../spool >/dev/null 2>&1 && echo spool-listed || echo spool-refused",
        f"cat {token_file} 2>/dev/null || echo token-refused",
    ]
    return "; ".join(probes)


@needs_root
def test_a_root_pilots_jobs_run_as_their_own_uids_and_reach_none_of_its_files(
    coordinator: Any, user: User, open_root: Path
) -> None:
    token = coordinator.token(role=Role.PILOT.value, subject="factory", vo="vo1")
    pilot = Pilot(coordinator.url, token, open_root)
    pilot.token_file.chmod(0o644)  # as a site may leave it
    (pilot.workdir / "spool").mkdir(parents=True, mode=0o755)  # an older pilot's
    pilot.workdir.chmod(0o755)
    script = payload(pilot.token_file).replace('"', '\\"')
    (job_id,) = user.submit(
        f"""Executable = "/bin/sh";
        Arguments = "-c \\"{script}\\"";
        OutputSandbox = {{"std.out", "std.err"}};"""
    )
    config = pilot.write_config(f"payload_uids: {UIDS}\n")
    done = pilot.run(extra=["--config", str(config)])
    assert done.returncode == 0, done.stderr

    info = user.status(job_id)
    assert info["status"] == "Done", info
    user.run("get-output", str(job_id), "--dir", "out")
    lines = (user.cwd / "out" / str(job_id) / "std.out").read_text().splitlines()
    uid, job_dir, *refusals = lines
    assert uid == "61040"
    assert job_dir == "700 61040"
    assert refusals == ["workdir-refused", "log-refused", "spool-refused", "token-refused"]
    assert token not in "\n".join(lines)
    modes = {
        path.name: stat.S_IMODE(path.stat().st_mode)
        for path in (pilot.workdir, pilot.workdir / "pilot.log", pilot.workdir / "spool")
    }
    assert modes == {"work": 0o711, "pilot.log": 0o600, "spool": 0o700}
    assert stat.S_IMODE(pilot.token_file.stat().st_mode) == 0o600
