"""``packaging/pilot-launcher.sh`` run for real: interpreter choice, checksum, exit codes,
signal forwarding. The pyz is a stand-in whose behaviour each test chooses."""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.zipapps import LAUNCHER, stub_pyz

EXIT_NO_PYTHON, EXIT_NO_PYZ, EXIT_BAD_CHECKSUM = 20, 21, 22
PILOT_EXIT_CODES = (0, 2, 10, 11, 12, 13, 14, 15)
BASH = shutil.which("bash") or "/bin/bash"
LINE_TIMEOUT_S = 30.0


def launch(
    args: list[str], env: dict[str, str], launcher: Path = LAUNCHER
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, str(launcher), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture(scope="module")
def built_pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stub_pyz(tmp_path_factory.mktemp("stub"))


@pytest.fixture
def pyz(built_pyz: Path, tmp_path: Path) -> Path:
    """A fresh copy of the stand-in pilot and its ``.sha256``, for a test to spoil."""
    for name in (built_pyz.name, f"{built_pyz.name}.sha256"):
        shutil.copy(built_pyz.parent / name, tmp_path / name)
    return tmp_path / built_pyz.name


@pytest.mark.parametrize("code", PILOT_EXIT_CODES)
def test_pilot_exit_code_and_arguments_pass_through(pyz: Path, code: int) -> None:
    done = launch(
        ["pilot", "--url", "https://c.example", "two words"],
        {"GRIDPILOT_PYZ": str(pyz), "STUB_EXIT_CODE": str(code)},
    )
    assert done.returncode == code, done.stderr
    assert done.stdout == "args ['pilot', '--url', 'https://c.example', 'two words']\n"
    assert "checksum" not in done.stderr  # the .sha256 beside the pyz matched


def test_pyz_next_to_the_launcher_is_the_default(pyz: Path) -> None:
    launcher = pyz.parent / "pilot-launcher.sh"
    shutil.copy(LAUNCHER, launcher)
    done = launch(["--version"], {"GRIDPILOT_PYZ": ""}, launcher=launcher)
    assert (done.returncode, done.stdout) == (0, "args ['--version']\n"), done.stderr


def test_checksum_file_mismatch_is_refused(pyz: Path) -> None:
    Path(f"{pyz}.sha256").write_text(f"{'0' * 64}  {pyz.name}\n")
    done = launch(["pilot"], {"GRIDPILOT_PYZ": str(pyz)})
    assert done.returncode == EXIT_BAD_CHECKSUM
    assert done.stdout == ""  # the pilot never ran
    assert f"checksum mismatch for {pyz}: expected sha256 {'0' * 64}" in done.stderr
    assert "refusing to run it" in done.stderr


def test_checksum_from_the_environment_wins_over_the_file(pyz: Path) -> None:
    digest = Path(f"{pyz}.sha256").read_text().split()[0]
    Path(f"{pyz}.sha256").write_text(f"{'0' * 64}  {pyz.name}\n")
    good = launch(["x"], {"GRIDPILOT_PYZ": str(pyz), "GRIDPILOT_PYZ_SHA256": digest.upper()})
    assert good.returncode == 0, good.stderr
    bad = launch(["x"], {"GRIDPILOT_PYZ": str(pyz), "GRIDPILOT_PYZ_SHA256": "ab" * 32})
    assert bad.returncode == EXIT_BAD_CHECKSUM
    assert bad.stdout == ""


def test_without_a_checksum_it_runs_and_warns(pyz: Path) -> None:
    Path(f"{pyz}.sha256").unlink()
    done = launch(["x"], {"GRIDPILOT_PYZ": str(pyz)})
    assert done.returncode == 0
    assert "warning: no checksum for" in done.stderr


def _path_with(tmp_path: Path, tools: dict[str, str]) -> str:
    """A PATH holding only ``tools`` (name -> real executable)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, target in tools.items():
        (bin_dir / name).symlink_to(target)
    return str(bin_dir)


def test_checksum_without_sha256sum_uses_python(pyz: Path, tmp_path: Path) -> None:
    path = _path_with(tmp_path, {"python3": sys.executable})
    good = launch(["x"], {"GRIDPILOT_PYZ": str(pyz), "PATH": path})
    assert good.returncode == 0, good.stderr
    Path(f"{pyz}.sha256").write_text("f" * 64)
    bad = launch(["x"], {"GRIDPILOT_PYZ": str(pyz), "PATH": path})
    assert bad.returncode == EXIT_BAD_CHECKSUM, bad.stderr
    # The digest came from python's hashlib, there being no sha256sum on this PATH.
    assert f"got {hashlib.sha256(pyz.read_bytes()).hexdigest()}" in bad.stderr


def test_no_python_on_path(pyz: Path, tmp_path: Path) -> None:
    path = _path_with(tmp_path, {"sha256sum": shutil.which("sha256sum") or "/usr/bin/sha256sum"})
    done = launch(["x"], {"GRIDPILOT_PYZ": str(pyz), "PATH": path})
    assert done.returncode == EXIT_NO_PYTHON
    assert "no python >= 3.9 found" in done.stderr
    assert "set GRIDPILOT_PYTHON" in done.stderr


def test_forced_python_too_old_is_refused_without_fallback(pyz: Path, tmp_path: Path) -> None:
    # Answers the launcher's version probe as Python 2.7 would.
    old = tmp_path / "python2.7"
    pretend = "import sys; sys.version_info = (2, 7, 18); exec(sys.argv[1])"
    old.write_text(f'#!/bin/sh\nexec {sys.executable} -c "{pretend}" "$2"\n')
    old.chmod(0o755)
    done = launch(["x"], {"GRIDPILOT_PYZ": str(pyz), "GRIDPILOT_PYTHON": str(old)})
    assert done.returncode == EXIT_NO_PYTHON
    assert done.stdout == ""
    assert f"GRIDPILOT_PYTHON={old} is not a runnable python >= 3.9" in done.stderr


def test_forced_python_is_used(pyz: Path) -> None:
    done = launch(["x"], {"GRIDPILOT_PYZ": str(pyz), "GRIDPILOT_PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr


def test_missing_pyz(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pyz"
    done = launch(["x"], {"GRIDPILOT_PYZ": str(missing)})
    assert done.returncode == EXIT_NO_PYZ
    assert f"pilot file {missing} is missing or unreadable" in done.stderr


def _default_hangup() -> None:
    # Under nohup the test runner ignores SIGHUP, started in the background of a script it
    # ignores SIGINT and SIGQUIT, and a shell started with a signal ignored cannot trap it:
    # give the launcher the dispositions a batch system gives it.
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_DFL)


def _start_sleeping(pyz: Path) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [BASH, str(LAUNCHER), "sleep"],
        env={**os.environ, "GRIDPILOT_PYZ": str(pyz)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=_default_hangup,
    )
    ready = _line(process).split()
    assert ready[0] == "ready", ready
    return process, int(ready[1])


def _line(process: subprocess.Popen[str], timeout_s: float = LINE_TIMEOUT_S) -> str:
    """The launcher's next line, or a failure (and the launcher killed) after ``timeout_s``."""
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], timeout_s)
    if not readable:
        process.kill()
        process.wait()
        pytest.fail(f"the launcher printed nothing for {timeout_s} s")
    return process.stdout.readline()


@pytest.mark.parametrize(
    ("stop", "seen"),
    [
        (signal.SIGTERM, signal.SIGTERM),
        (signal.SIGINT, signal.SIGINT),
        # The pilot has no HUP handler: a hang-up reaches it as a TERM, so it drains.
        (signal.SIGHUP, signal.SIGTERM),
    ],
)
def test_signals_reach_the_pilot_and_its_code_comes_back(
    pyz: Path, stop: signal.Signals, seen: signal.Signals
) -> None:
    process, child = _start_sleeping(pyz)
    assert child != process.pid  # the pilot runs as a child, not exec'd
    process.send_signal(signal.SIGUSR1)
    assert _line(process) == "got SIGUSR1\n"
    assert process.poll() is None  # USR1 only asks the pilot for its state
    process.send_signal(stop)
    assert _line(process) == f"got {seen.name}\n"
    assert process.wait(timeout=10) == 14


def test_a_pilot_killed_by_a_signal_exits_128_plus_its_number(pyz: Path) -> None:
    process, child = _start_sleeping(pyz)
    os.kill(child, signal.SIGKILL)
    assert process.wait(timeout=10) == 128 + signal.SIGKILL


def test_scripts_are_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck is required in CI (tests/setup-system.sh installs it)")
        pytest.skip("shellcheck not installed")
    scripts = [LAUNCHER, LAUNCHER.parent / "htcondor" / "pilot-wrapper.sh"]
    done = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
