"""The ``gridpilot`` command loads only what the sub-command needs: ``pilot`` nothing of the
coordinator, a user command nothing of the server's frameworks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

SERVER_FRAMEWORKS = ["fastapi", "uvicorn", "sqlalchemy", "pydantic", "starlette"]


def _run_blocked(
    blocked: list[str], argv: list[str], tmp: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``gridpilot argv`` with ``blocked`` packages made unimportable; print which of
    them (or of the coordinator's) were imported all the same."""
    script = (
        "import sys, atexit\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ImportError('gridpilot imported ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "atexit.register(lambda: print('LOADED', sorted({m.split('.')[0] for m in sys.modules}"
        f" & set({[*blocked, 'coordinator']!r})), file=sys.stderr))\n"
        f"sys.argv = ['gridpilot', *{argv!r}]\n"
        "from client.cli import main\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO_ROOT), "GRIDPILOT_MAX_RETRY_S": "1", "PATH": "/usr/bin:/bin"},
    )


def test_gridpilot_pilot_loads_no_coordinator_module(tmp_path: Path) -> None:
    token = tmp_path / "pilot.token"
    token.write_text("x")
    argv = ["pilot", "--url", "http://127.0.0.1:9", "--token-file", str(token)]
    argv += ["--workdir", str(tmp_path / "work"), "--idle-timeout-s", "0", "--log-level", "ERROR"]
    result = _run_blocked(["coordinator", *SERVER_FRAMEWORKS], argv, tmp_path)
    # The pilot ran its checks and gave up on the coordinator: exit 11, not an ImportError.
    assert result.returncode == 11, result.stderr
    assert "LOADED []" in result.stderr


def test_options_before_pilot_reach_the_pilot(tmp_path: Path) -> None:
    token = tmp_path / "pilot.token"
    token.write_text("x")
    argv = ["--url", "ftp://typed-before", "pilot", "--token-file", str(token)]
    argv += ["--workdir", str(tmp_path / "work")]
    result = _run_blocked(["coordinator"], argv, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "ftp://typed-before" in result.stderr


def test_a_user_command_loads_no_server_framework(tmp_path: Path) -> None:
    (tmp_path / "job.jdl").write_text('Executable = "/bin/true";')
    for argv in (["status", "1"], ["submit", "job.jdl"], ["jdl", "job.jdl"]):
        result = _run_blocked(SERVER_FRAMEWORKS, ["--url", "http://127.0.0.1:9", *argv], tmp_path)
        assert result.returncode in (0, 3, 4), result.stderr  # unreachable or no token
        assert "LOADED []" in result.stderr or "LOADED ['coordinator']" in result.stderr


def test_a_status_loads_nothing_of_the_coordinator(tmp_path: Path) -> None:
    result = _run_blocked(
        ["coordinator", *SERVER_FRAMEWORKS],
        ["--url", "http://127.0.0.1:9", "--token", "t", "status", "1"],
        tmp_path,
    )
    assert result.returncode == 3, result.stderr
    assert "LOADED []" in result.stderr
