"""A pilot run as an ordinary user, as on most sites (issue 12, item 4).

There the pilot's own hardening is what stands between a plain payload (same uid) and the
pilot's token: the pilot makes itself non-dumpable, so the payload cannot read its
``/proc/<pid>/environ`` (where a ``GRIDPILOT_TOKEN`` given by the batch system stays, even
once the pilot dropped it from ``os.environ``), its memory, nor trace it. Non-dumpable
also makes some of the pilot's own ``/proc/self`` files root's: this proves the pilot still
runs jobs to Done that way. CI runs as root, so the pilot is started as nobody, with an
interpreter of the test's Python version that nobody may run (a venv made from a Python
under /root is not: then the system's, with the venv's packages on ``PYTHONPATH``).
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol import Role
from tests.conftest import REPO_ROOT
from tests.integration.conftest import User

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="starting a pilot as nobody needs root")
PAYLOAD = (
    "id -u; tr '\\0' ' ' < /proc/$PPID/cmdline; echo; "
    "cat /proc/$PPID/environ || echo environ-refused"
)
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"
PROBE = "import sys, psutil, requests; print(sys.version_info[:2])"


def python_for_nobody() -> tuple[str, dict[str, str]]:
    """An interpreter of this version nobody can run, and the environment it needs."""
    path = os.pathsep.join([str(REPO_ROOT), *site.getsitepackages()])
    dirs = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/local/bin", "/usr/bin"]
    found = [shutil.which(f"python{VERSION}", path=d) for d in dict.fromkeys(dirs) if d]
    candidates: list[tuple[str, dict[str, str]]] = [(sys.executable, {})]
    candidates += [(c, {"PYTHONPATH": path}) for c in found if c]
    for candidate, env in candidates:
        # Started again from a process of nobody's (setpriv itself may reach it as root).
        again = "import subprocess, sys; subprocess.run([sys.executable, '-c', CHECK], check=True)"
        probe = [*AS_NOBODY, candidate, "-c", again.replace("CHECK", repr(PROBE))]
        done = subprocess.run(
            probe, capture_output=True, text=True, timeout=60, env={"PATH": os.defpath, **env}
        )
        if done.returncode == 0 and done.stdout.strip() == str(sys.version_info[:2]):
            return candidate, env
    pytest.skip(f"no Python {VERSION} with the test's packages that nobody may run")


@pytest.fixture
def nobodys_dir() -> Iterator[Path]:
    """A work dir nobody can write (pytest's tmp dirs are root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="gridpilot-unprivileged-"))
    os.chown(path, NOBODY, NOBODY)
    yield path
    subprocess.run(["rm", "-rf", "--", str(path)], check=True, timeout=60)


@needs_root
def test_an_unprivileged_pilot_runs_jobs_whose_payloads_cannot_read_it(
    coordinator: Any, user: User, nobodys_dir: Path
) -> None:
    token = coordinator.token(role=Role.PILOT.value, subject="factory", vo="vo1")
    (job_id,) = user.submit(
        f"""Executable = "/bin/sh";
        Arguments = "-c \\"{PAYLOAD}\\"";
        OutputSandbox = {{"std.out"}};"""
    )
    python, python_env = python_for_nobody()
    command = [
        *AS_NOBODY, python, "-m", "pilot", "pilot",
        "--url", coordinator.url,
        "--workdir", str(nobodys_dir / "work"),
        "--idle-timeout-s", "2",
        "--poll-interval-s", "0.5",
    ]  # fmt: skip
    # Nothing of the test runner's environment: it is what the payload tries to read.
    env = {"PATH": os.defpath, "HOME": str(nobodys_dir), "GRIDPILOT_TOKEN": token, **python_env}
    pilot = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert pilot.returncode == 0, pilot.stderr

    info = user.status(job_id)
    assert info["status"] == "Done", info
    user.run("get-output", str(job_id), "--dir", "out")
    stdout = (user.cwd / "out" / str(job_id) / "std.out").read_text()
    uid, cmdline, refused = stdout.splitlines()[:3]
    assert uid == str(NOBODY)  # the payload shares the pilot's uid: only dumpable protects
    assert "-m pilot pilot" in cmdline  # $PPID is the pilot
    assert refused == "environ-refused", stdout
    assert token not in stdout
