"""Container jobs through a real pilot: bubblewrap for real, a broken runtime set aside."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from tests.integration.conftest import Pilot, User
from tests.wrapper.rootfs import build_rootfs


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rootfs(tmp_path_factory.mktemp("image") / "rootfs")


def container_jdl(image: Path, script: str) -> str:
    return f"""
        Executable = "/bin/sh";
        Arguments = "-c '{script}'";
        Container = "{image}";
        StdOutput = "StdOut";
        StdError = "StdErr";
        OutputSandbox = {{"StdOut", "StdErr"}};
    """


def test_container_job_runs_in_bwrap_without_the_pilots_token(
    user: User, pilot: Pilot, rootfs: Path
) -> None:
    token = pilot.token_file.read_text()
    script = f"pwd; env; cat {pilot.token_file} || echo token-file-not-visible"
    (job_id,) = user.submit(container_jdl(rootfs, script))
    config = pilot.write_config(
        f"container_runtimes: [bwrap]\nallow_plain: false\nallowed_images: ['{rootfs.parent}']\n"
    )
    # The pilot's own environment carries the token too: the payload must not see it.
    finished = pilot.run(extra=["--config", str(config)], env={"GRIDPILOT_TOKEN": token})
    assert finished.returncode == 0, finished.stderr

    info = user.status(job_id)
    assert info["status"] == "Done", user.run("logging-info", str(job_id)).stdout
    user.run("get-output", str(job_id), "--dir", "out")
    stdout = (user.cwd / "out" / str(job_id) / "StdOut").read_text()
    assert stdout.startswith("/srv\n")
    assert "token-file-not-visible" in stdout
    assert token not in stdout and "GRIDPILOT_TOKEN" not in stdout


def test_broken_runtime_reschedules_the_job_and_is_no_longer_offered(
    user: User, pilot: Pilot, rootfs: Path
) -> None:
    (job_id,) = user.submit(container_jdl(rootfs, "touch ran"))
    # A site bind whose mount point cannot be made in the read-only image: bwrap fails.
    config = pilot.write_config(
        "container_runtimes: [bwrap]\nallow_plain: false\ncontainer_binds: ['/tmp:/bin/extra']\n"
        f"allowed_images: ['{rootfs.parent}']\n"
    )
    finished = pilot.run(extra=["--config", str(config)])
    assert finished.returncode == 0, finished.stderr

    history = user.run("logging-info", str(job_id)).stdout
    assert "Container Runtime Failed: bwrap: Can't mkdir /bin/extra" in history
    assert "Rescheduled" in history
    # Offered no runtime any more, the pilot was not given the job again.
    assert user.status(job_id)["status"] == "Waiting", history
    assert history.count("Matched") == 1
    assert "container runtime bwrap failed on this node: no longer offering it" in pilot.log()


def test_a_job_naming_the_pilots_directory_as_image_fails_as_its_own_fault(
    user: User, pilot: Pilot, rootfs: Path
) -> None:
    """Issue 12, item 2, through a real pilot: ``Container = <the pilot's token dir>`` and
    ``Container = "/proc"`` are refused; the jobs fail for good, nothing is rescheduled."""
    jobs = [
        user.submit(container_jdl(image, "cat pilot.token"))[0]
        for image in (pilot.root, Path("/proc"))
    ]
    allowed = pilot.root.parent
    config = pilot.write_config(
        f"container_runtimes: [bwrap]\nallow_plain: false\nallowed_images: ['{allowed}']\n"
    )
    finished = pilot.run(extra=["--config", str(config)])
    assert finished.returncode == 0, finished.stderr
    for job_id, why in zip(jobs, ("it holds the pilot's directory", "/proc is never an image")):
        info = user.status(job_id)
        assert info["status"] == "Failed" and info["reschedule_count"] == 0
        assert info["minor_status"].startswith("Container Image Not Allowed: ")
        assert why in info["minor_status"]


def test_one_users_missing_images_do_not_stop_the_pilot_for_the_others(
    make_user: Callable[..., User], pilot: Pilot, rootfs: Path
) -> None:
    """Issue 12, item 9, through images: a missing image the job named is an infrastructure
    failure (rescheduled: another node's CVMFS may have it), but six of one user's jobs
    failing so must not trip the black-hole guard and leave the next user's job waiting."""
    carol, dave = make_user("carol"), make_user("dave")
    missing = [
        carol.submit(container_jdl(rootfs.parent / "no-such-image", "true"))[0] for _ in range(6)
    ]
    (fine,) = dave.submit(container_jdl(rootfs, "echo fine"))
    config = pilot.write_config(
        f"container_runtimes: [bwrap]\nallow_plain: false\nallowed_images: ['{rootfs.parent}']\n"
    )
    finished = pilot.run(idle_timeout_s=3, extra=["--config", str(config), "--cores", "1"])
    assert finished.returncode == 0, finished.stderr
    assert "black-hole" not in finished.stderr
    assert dave.status(fine)["status"] == "Done"
    for job_id in missing:
        assert carol.status(job_id)["status"] == "Failed"
        assert "Container Image Not Found" in carol.run("logging-info", str(job_id)).stdout
