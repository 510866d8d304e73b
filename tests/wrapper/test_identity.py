"""A uid of its own per job when the pilot is root (issue 12, item 4): real processes,
real bubblewrap, real file permissions. These tests need root (CI runs as root)."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import JobStatus
from tests.wrapper.conftest import IMAGE_LOCATIONS, DirectoryTransport, SandboxMaker, assignment
from tests.wrapper.rootfs import build_rootfs
from wrapper.errors import RuntimeFailure
from wrapper.identity import UidPool, hand_over, parse_uid_range
from wrapper.job import ContainerSettings, JobOutcome, JobRun, WrapperConfig

UID = 61_017
OTHER_UID = 61_018
CONFIG = WrapperConfig(
    kill_grace_s=0.5,
    upload_backoff_s=0.01,
    containers=ContainerSettings(runtimes=("bwrap",), allowed_images=IMAGE_LOCATIONS),
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching uids needs root")


@pytest.fixture
def open_dirs() -> Iterator[list[Path]]:
    """Directories the job uids can traverse (pytest's tmp dirs are root-only, 0700)."""
    made: list[Path] = []
    yield made
    for path in made:  # rm, not shutil.rmtree: it recurses once per level of a deep tree
        subprocess.run(["rm", "-rf", "--", str(path)], check=True, timeout=60)


def open_dir(made: list[Path], prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"gridpilot-uid-test-{prefix}-"))
    path.chmod(0o755)
    made.append(path)
    return path


@pytest.fixture
def pilot_dir(open_dirs: list[Path]) -> Path:
    return open_dir(open_dirs, "pilot")


def run_as(
    uid: int, pilot_dir: Path, transport: DirectoryTransport, job_id: int = 7, **fields: object
) -> JobOutcome:
    job = assignment(job_id=job_id, **fields)
    run = JobRun(job, pilot_dir / f"job_{job_id}", transport, CONFIG, payload_user=uid)
    return run.run()


@needs_root
def test_plain_payload_runs_as_its_own_uid_and_cannot_read_the_pilots_files(
    pilot_dir: Path, transport: DirectoryTransport, make_sandbox: SandboxMaker
) -> None:
    token = pilot_dir / "pilot.token"
    token.write_text("pilot-token-secret")
    token.chmod(0o600)
    neighbour = pilot_dir / "job_8"
    neighbour.mkdir(mode=0o700)
    (neighbour / "result.txt").write_text("the other job's data")
    sandbox = make_sandbox({"in/data.txt": "input\n"})
    script = (
        "id -u; id -G; stat -c '%a %u' .; cat in/data.txt; echo more >> in/data.txt; "
        f"cat {token} || echo token-refused; ls {neighbour} || echo neighbour-refused; "
        "echo result > out.txt"
    )
    outcome = run_as(
        UID,
        pilot_dir,
        transport,
        executable="/bin/sh",
        arguments=["-c", script],
        input_sandboxes=[sandbox],
        output_sandbox=["out.txt", "std.out"],
    )
    assert outcome.status == JobStatus.DONE, outcome.minor_status
    lines = (pilot_dir / "job_7" / "std.out").read_text().splitlines()
    assert lines[:4] == [str(UID), str(UID), f"700 {UID}", "input"]
    assert lines[4:] == ["token-refused", "neighbour-refused"]
    assert "pilot-token-secret" not in (pilot_dir / "job_7" / "std.err").read_text()
    assert outcome.output_sandbox and not outcome.output_missing
    assert stat.S_IMODE((pilot_dir / "job_7").stat().st_mode) == 0o700


@needs_root
def test_container_runtime_itself_runs_as_the_jobs_uid(
    pilot_dir: Path, transport: DirectoryTransport, open_dirs: list[Path]
) -> None:
    image = build_rootfs(open_dir(open_dirs, "image") / "rootfs")
    outcome = run_as(
        UID,
        pilot_dir,
        transport,
        container=str(image),
        executable="sh",
        arguments=["-c", "id -u; echo written > /srv/out.txt"],
    )
    assert outcome.status == JobStatus.DONE, outcome.minor_status
    assert (pilot_dir / "job_7" / "std.out").read_text() == f"{UID}\n"
    assert (pilot_dir / "job_7" / "out.txt").stat().st_uid == UID


@needs_root
def test_pool_gives_each_running_job_a_uid_of_its_own() -> None:
    pool = UidPool(parse_uid_range(f"{UID}-{OTHER_UID}"))
    first, second = pool.take(), pool.take()
    assert {first, second} == {UID, OTHER_UID}
    assert pool.take() is None  # all in use: the pilot takes no more jobs meanwhile
    pool.give_back(first)
    assert pool.take() == first


def test_uid_ranges_parse_or_are_refused_clearly() -> None:
    assert parse_uid_range("") == range(0)
    assert parse_uid_range("61000-61002") == range(61000, 61003)
    assert parse_uid_range("61000") == range(61000, 61001)
    for bad in ("0-10", "abc", "10-5"):
        with pytest.raises(RuntimeFailure, match="payload_uids"):
            parse_uid_range(bad)


def test_without_root_the_pool_gives_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # the edge of the machine: who we are
    pool = UidPool(parse_uid_range("61000-61001"))
    assert pool.take() is None and pool.free() == 0


@needs_root
def test_a_very_deep_input_tree_is_handed_over_without_recursion(pilot_dir: Path) -> None:
    deep = str(pilot_dir / "job_9")
    path = deep
    os.mkdir(path)
    for _ in range(1500):  # one level at a time: pathlib and os.makedirs recurse too
        path += "/d"
        os.mkdir(path)
    Path(path, "leaf").write_text("x")
    hand_over(Path(deep), UID)
    assert os.stat(f"{path}/leaf").st_uid == UID
