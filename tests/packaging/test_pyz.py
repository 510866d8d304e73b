"""The single-file pilot: built once per session by ``packaging/build-pyz.sh``, then run the way
a site runs it: a bare system ``python3 -I -S`` that sees nothing installed, and a bubblewrap
jail where everything but the pilot's work dir is read-only."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from protocol import Role, __version__
from tests.conftest import REPO_ROOT
from tests.integration.conftest import TUTORIAL_JDL, User

SYSTEM_PYTHON = "/usr/bin/python3"
FORBIDDEN_TOPS = {
    "coordinator", "fastapi", "uvicorn", "sqlalchemy", "pydantic", "starlette",
    "rich", "pygments", "cryptography", "cffi",
}  # fmt: skip
ELF_MACHINES = {"x86_64": 62, "aarch64": 183}
"""``e_machine`` in an ELF header, per architecture directory of the archive."""


def _need(thing: str, present: bool) -> None:
    """Skip locally without ``thing``; in CI its absence is a failure."""
    if present:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{thing} is required in CI")
    pytest.skip(f"{thing} not available")


def _older_python(version: str) -> Optional[str]:
    """A ``python<version>`` installed by pyenv (not its shim) or on PATH, if there is one."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    pyenv = sorted((pyenv_root / "versions").glob(f"{version}.*/bin/python{version}"))
    return str(pyenv[-1]) if pyenv else shutil.which(f"python{version}")


@pytest.fixture
def pyz(pilot_pyz: Path) -> Path:
    """``gridpilot-pilot.pyz`` built from this checkout, alone in a directory of its own."""
    return pilot_pyz


def _run(
    python: str, pyz: Path, args: Sequence[str], cwd: Path, home: Path, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -I -S pyz args`` with nothing of ours on the path and only PATH and HOME set."""
    return subprocess.run(
        [python, "-I", "-S", str(pyz), *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_archive_carries_the_worker_side_and_both_psutil_builds_only(pyz: Path) -> None:
    with zipfile.ZipFile(pyz) as archive:
        names = archive.namelist()
        tops = {n.split("/")[1] for n in names if n.startswith("lib/")}
        tops |= {n.split("/")[2] for n in names if n.startswith("arch/")}
        for package in ("protocol", "pilot", "wrapper", "checks"):
            assert f"lib/{package}/__init__.py" in names
        assert "lib/checks/builtin/disk.py" in names
        assert {"requests", "urllib3", "idna", "charset_normalizer", "certifi"} <= tops
        assert {"yaml", "spython", "typer", "click"} <= tops
        assert not tops & FORBIDDEN_TOPS, sorted(tops & FORBIDDEN_TOPS)
        # Every compiled module is psutil's, once per architecture, built for it.
        native = [n for n in names if n.endswith(".so")]
        assert native and all(n.startswith("arch/") and "/psutil/" in n for n in native)
        for arch, machine in ELF_MACHINES.items():
            (module,) = [n for n in native if n.startswith(f"arch/{arch}/")]
            assert ".abi3." in module
            header = archive.read(module)[:20]
            assert header[:4] == b"\x7fELF"
            assert struct.unpack("<H", header[18:20])[0] == machine, module
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    checksum = pyz.with_name(pyz.name + ".sha256").read_text()
    assert checksum == f"{hashlib.sha256(pyz.read_bytes()).hexdigest()}  {pyz.name}\n"


def test_runs_on_a_bare_python_and_writes_only_in_its_work_dir(pyz: Path, tmp_path: Path) -> None:
    assert os.path.exists(SYSTEM_PYTHON)
    home, workdir = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    workdir.mkdir()
    probe = subprocess.run([SYSTEM_PYTHON, "-I", "-S", "-c", "import psutil"], check=False)
    assert probe.returncode != 0, "the bare interpreter must not see an installed psutil"

    usage = _run(SYSTEM_PYTHON, pyz, [], workdir, home)  # no command: the help
    assert "Usage: gridpilot-pilot.pyz [OPTIONS] COMMAND" in usage.stdout + usage.stderr
    assert "Traceback" not in usage.stderr  # plain help: Typer does without rich
    mistake = _run(SYSTEM_PYTHON, pyz, ["pilot", "--bogus"], workdir, home)
    assert mistake.returncode == 2
    assert "No such option: --bogus" in mistake.stderr
    assert "Traceback" not in mistake.stderr

    version = _run(SYSTEM_PYTHON, pyz, ["--version"], workdir, home)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"gridpilot-pilot {__version__}"

    checks = _run(SYSTEM_PYTHON, pyz, ["checks", "run", "--format", "json"], workdir, home)
    # Every built-in ran (the load check may warn or fail on a busy machine: not ours to judge).
    assert checks.returncode in (0, 1, 2), checks.stdout + checks.stderr
    assert "Traceback" not in checks.stderr
    results = {c["name"]: c for c in json.loads(checks.stdout)["checks"]}
    assert results["python"]["facts"]["python_executable"] == SYSTEM_PYTHON
    # cores, memory and disk use psutil, from the extracted abi3 build.
    for name in ("python", "platform", "cores", "memory", "disk", "timeleft"):
        assert results[name]["status"] == "ok", results[name]

    assert os.listdir(home) == []
    assert sorted(os.listdir(pyz.parent)) == [pyz.name, pyz.name + ".sha256"]
    assert os.listdir(workdir) == [".gridpilot-pyz"]
    (cache,) = (workdir / ".gridpilot-pyz").iterdir()
    assert (cache / "lib/pilot/cli.py").is_file()
    assert list((cache / "arch").iterdir()) == [cache / "arch" / os.uname().machine]


def test_work_dir_from_the_environment_and_the_config_file(pyz: Path, tmp_path: Path) -> None:
    config = tmp_path / "pilot.yaml"
    config.write_text(f"pilot:\n  workdir: {tmp_path / 'from-config'}\n")
    env_run = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-S", str(pyz), "--version"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "GRIDPILOT_WORKDIR": str(tmp_path / "from-env")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert env_run.stdout.startswith("gridpilot-pilot")
    # Without a coordinator URL the pilot stops at its configuration (exit 2), unpacked already.
    config_run = _run(SYSTEM_PYTHON, pyz, ["pilot", "--config", str(config)], tmp_path, tmp_path)
    assert config_run.returncode == 2
    assert "missing url" in config_run.stderr
    assert (tmp_path / "from-env/.gridpilot-pyz").is_dir()
    assert (tmp_path / "from-config/.gridpilot-pyz").is_dir()
    assert not (tmp_path / ".gridpilot-pyz").exists()


def test_pilots_starting_together_share_one_cache(pyz: Path, tmp_path: Path) -> None:
    starts = [
        subprocess.Popen(
            [SYSTEM_PYTHON, "-I", "-S", str(pyz), "--version"],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [start.communicate(timeout=60) for start in starts]
    assert [start.returncode for start in starts] == [0, 0, 0, 0], outputs
    assert all(out.startswith("gridpilot-pilot") for out, _ in outputs)
    # One complete copy; the losers' temporary copies are gone.
    (cache,) = (tmp_path / ".gridpilot-pyz").iterdir()
    assert (cache / "lib/pilot/cli.py").is_file()


@pytest.mark.parametrize("version", ["3.9", "3.8"])
def test_python_floor(pyz: Path, tmp_path: Path, version: str) -> None:
    python = _older_python(version)
    if python is None:
        pytest.skip(f"no python{version} on this machine")
    result = _run(python, pyz, ["--version"], tmp_path, tmp_path)
    if version == "3.9":
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("gridpilot-pilot")
    else:
        assert result.returncode == 2
        assert "needs Python >= 3.9, this is 3.8" in result.stderr
        assert os.listdir(tmp_path) == []


def _jail(workdir: Path, home: Path) -> list[str]:
    """Everything read-only but ``workdir``; HOME an empty read-only directory; host network."""
    return [
        "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
        "--bind", str(workdir), str(workdir), "--chdir", str(workdir),
        "--die-with-parent", "--clearenv",
        "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", str(home),
    ]  # fmt: skip


def test_a_read_only_work_dir_is_a_clear_error(pyz: Path, tmp_path: Path) -> None:
    _need("bubblewrap", shutil.which("bwrap") is not None)
    writable, read_only = tmp_path / "writable", tmp_path / "read-only"
    writable.mkdir()
    read_only.mkdir()
    command = [SYSTEM_PYTHON, "-I", "-S", str(pyz), "checks", "run", "--workdir", str(read_only)]
    result = subprocess.run(
        [*_jail(writable, tmp_path), *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"gridpilot-pilot: cannot unpack into {read_only}/.gridpilot-pyz/"
    )
    assert "Read-only file system" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("version", ["system", "3.9"])
def test_full_pilot_loop_in_a_read_only_jail(
    pyz: Path, tmp_path: Path, start_coordinator: Callable[..., Any], version: str
) -> None:
    """The system python3, and Python 3.9 (the worker side's floor) where this machine has one."""
    _need("bubblewrap", shutil.which("bwrap") is not None)
    python = SYSTEM_PYTHON if version == "system" else _older_python(version)
    if python is None:
        pytest.skip(f"no python{version} on this machine")
    coordinator = start_coordinator(heartbeat_interval_s=1, match_retry_after_s=0.5)
    user_dir, home, workdir = tmp_path / "user", tmp_path / "home", tmp_path / "work"
    for directory in (user_dir, home, workdir):
        directory.mkdir()
    token_file = tmp_path / "pilot.token"
    token_file.write_text(coordinator.token(role=Role.PILOT.value, subject="factory", vo="vo1"))
    user = User(coordinator.url, coordinator.token(subject="alice", vo="vo1"), user_dir)
    (job_id,) = user.submit(TUTORIAL_JDL)
    before = {"home": _tree(home), "pyz dir": _tree(pyz.parent)}

    command = [
        *_jail(workdir, home), python, "-I", "-S", str(pyz), "pilot",
        "--url", coordinator.url, "--token-file", str(token_file),
        "--workdir", str(workdir), "--idle-timeout-s", "2", "--poll-interval-s", "0.5",
    ]  # fmt: skip
    pilot = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert pilot.returncode == 0, pilot.stderr
    assert user.status(job_id)["status"] == "Done"
    user.run("get-output", str(job_id), "--dir", str(user_dir / "out"))
    # The tutorial job's `ls -ltr` of its work dir, run by the pilot from the file.
    assert (user_dir / "out" / str(job_id) / "StdOut").read_text().startswith("total ")
    assert {"home": _tree(home), "pyz dir": _tree(pyz.parent)} == before
    assert (workdir / ".gridpilot-pyz").is_dir()
    assert f"job_{job_id}" in " ".join(os.listdir(workdir))


@pytest.mark.slow
def test_the_build_is_reproducible(tmp_path: Path) -> None:
    # Two builds back to back (not against the session's pyz: the checkout may have been
    # edited since), byte for byte, checksum files included.
    outputs = [
        tmp_path / "first" / "gridpilot-pilot.pyz",
        tmp_path / "second" / "gridpilot-pilot.pyz",
    ]
    for output in outputs:
        subprocess.run(
            ["bash", str(REPO_ROOT / "packaging/build-pyz.sh"), str(output)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    first, second = outputs
    assert first.read_bytes() == second.read_bytes()
    assert (first.parent / "gridpilot-pilot.pyz.sha256").read_text() == (
        second.parent / "gridpilot-pilot.pyz.sha256"
    ).read_text()


@pytest.mark.slow
def test_a_wheel_not_matching_its_recorded_hash_fails_the_build(tmp_path: Path) -> None:
    recorded = (REPO_ROOT / "packaging/pyz/wheels.sha256").read_text().splitlines()
    tampered = tmp_path / "wheels.sha256"
    # As if the index now served a different requests wheel under the same name.
    tampered.write_text(
        "".join(("0" * 64 + line[64:] if "requests-" in line else line) + "\n" for line in recorded)
    )
    output = tmp_path / "gridpilot-pilot.pyz"
    build = [sys.executable, str(REPO_ROOT / "packaging/pyz/build.py"), str(output)]
    result = subprocess.run(
        [*build, "--hashes", str(tampered)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    assert f"wheels not matching {tampered}: requests-" in result.stderr
    assert not output.exists()
