"""packaging/slurm/submit-pilots.sh without a Slurm: its options, and the batch script it
writes run directly as slurmd would run it (``SLURM_JOB_ID`` set), with a stand-in pilot."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SUBMIT_PILOTS = REPO_ROOT / "packaging" / "slurm" / "submit-pilots.sh"
STAND_IN = """#!/bin/bash
printf '%s\\n' "$@" > "$ARGS_FILE"
trap 'kill "$sleeper" 2>/dev/null; exit 14' TERM
if [ "$STAND_IN_EXIT" = wait ]; then
    sleep 60 &
    sleeper=$!
    touch "$ARGS_FILE.ready"
    wait
fi
if [ "$STAND_IN_EXIT" = kill ]; then
    kill -KILL $$
fi
exit "$STAND_IN_EXIT"
"""


def dry_run(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    stand_in = tmp_path / "stand-in-pilot"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    token_file = tmp_path / "my tokens" / "pilot token"
    token_file.parent.mkdir(exist_ok=True)
    token_file.write_text("secret")
    return subprocess.run(
        ["bash", str(SUBMIT_PILOTS), "--dry-run", "--url", "http://127.0.0.1:1/x y",
         "--token-file", str(token_file), "--pilot-cmd", str(stand_in), *options],
        capture_output=True, text=True, cwd=tmp_path, timeout=30,
    )  # fmt: skip


def batch_script(tmp_path: Path, *options: str) -> Path:
    done = dry_run(tmp_path, *options)
    assert done.returncode == 0, done.stderr
    script = tmp_path / "batch.sh"
    script.write_text(done.stdout.split("\n", 1)[1])  # the first line is the sbatch command
    return script


def start_batch(tmp_path: Path, script: Path, exit_code: str) -> subprocess.Popen[str]:
    (tmp_path / "scratch").mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "SLURM_JOB_ID": "77",
        "TMPDIR": str(tmp_path / "scratch"),
        "ARGS_FILE": str(tmp_path / "args"),
        "STAND_IN_EXIT": exit_code,
    }
    return subprocess.Popen(["bash", str(script)], env=env, text=True)


def test_dry_run_shows_the_sbatch_command_with_the_sites_options_last(tmp_path: Path) -> None:
    done = dry_run(tmp_path, "-n", "3", "--job-name", "atlas", "--", "--time=60", "-p", "grid")
    assert done.returncode == 0, done.stderr
    command = done.stdout.splitlines()[0]
    assert command.startswith("sbatch --parsable --job-name atlas --array 1-3 ")
    assert command.endswith(" --time=60 -p grid ")
    assert f"--output {tmp_path}/atlas-%A_%a.out" in command
    assert "secret" not in done.stdout, "the token goes by file, never into the job script"


def test_the_batch_script_runs_the_pilot_and_exits_with_its_code(tmp_path: Path) -> None:
    script = batch_script(tmp_path, "--pilot-arg=--idle-timeout-s=30")
    process = start_batch(tmp_path, script, "13")
    assert process.wait(timeout=30) == 13
    workdir = tmp_path / "scratch" / "gridpilot-pilot-77"
    assert (tmp_path / "args").read_text().splitlines() == [
        "pilot",
        "--url", "http://127.0.0.1:1/x y",
        "--token-file", str(tmp_path / "my tokens" / "pilot token"),
        "--workdir", str(workdir),
        "--idle-timeout-s=30",
    ]  # fmt: skip
    assert workdir.is_dir(), "a failed pilot's work dir is kept for a look"


def test_a_pilot_killed_by_a_signal_gives_128_plus_its_number(tmp_path: Path) -> None:
    process = start_batch(tmp_path, batch_script(tmp_path), "kill")
    assert process.wait(timeout=30) == 128 + signal.SIGKILL


def test_a_pilot_ending_normally_leaves_no_work_dir_unless_asked(tmp_path: Path) -> None:
    workdir = tmp_path / "scratch" / "gridpilot-pilot-77"
    assert start_batch(tmp_path, batch_script(tmp_path), "0").wait(timeout=30) == 0
    assert not workdir.exists()
    script = batch_script(tmp_path, "--keep-workdir")
    assert start_batch(tmp_path, script, "0").wait(timeout=30) == 0
    assert workdir.is_dir()


def test_sigterm_to_the_batch_shell_reaches_the_pilot(tmp_path: Path) -> None:
    """As ``sbatch --signal=B:TERM@120`` does: only the batch shell gets the signal."""
    process = start_batch(tmp_path, batch_script(tmp_path), "wait")
    deadline = time.monotonic() + 30
    while not (tmp_path / "args.ready").exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 14


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--url", ""], "--url (or GRIDPILOT_URL) is required"),
        (["-n", "0"], "--pilots must be a positive number"),
        (["--token-file", "/nonexistent"], "cannot read the token file"),
        (["--bogus"], "unknown option: --bogus"),
    ],
)
def test_bad_options_exit_2_with_a_message(
    tmp_path: Path, options: list[str], message: str
) -> None:
    done = dry_run(tmp_path, *options)
    assert done.returncode == 2
    assert message in done.stderr


def test_scripts_are_shellcheck_clean(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck is required in CI (tests/setup-system.sh installs it)")
        pytest.skip("shellcheck not installed")
    here = Path(__file__).parent
    scripts = [SUBMIT_PILOTS, here / "start-slurm.sh", here / "stop-slurm.sh"]
    scripts.append(batch_script(tmp_path, "--pilot-arg", "--idle-timeout-s=5"))
    done = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
