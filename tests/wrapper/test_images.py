"""Jobs name container images only where the site allows (issue 12, item 2).

Unit tests of ``allowed_image`` over real directories and links, then whole jobs under the
node's real bwrap: the images an attacker would name (``/proc``, the pilot's token dir, a
link out of an allowed location) are refused as the job's fault, and a CVMFS-style image
reached through a link inside its location still runs.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pytest

from protocol import JobStatus
from tests.wrapper.conftest import DirectoryTransport, assignment
from tests.wrapper.rootfs import build_rootfs
from wrapper.errors import ImageNotAllowed
from wrapper.images import allowed_image
from wrapper.job import ContainerSettings, JobOutcome, JobRun, WrapperConfig

NOT_ALLOWED = "Container Image Not Allowed"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An allowed location like /cvmfs/unpacked.cern.ch: a real image in a ``.flat`` tree
    and a readable name linking to it, plus links pointing out."""
    root = tmp_path / "unpacked"
    build_rootfs(root / ".flat" / "ab" / "el9")
    (root / "library").mkdir()
    (root / "library" / "el9").symlink_to(root / ".flat" / "ab" / "el9")
    (root / "library" / "proc").symlink_to("/proc")
    (root / "library" / "pilot").symlink_to(tmp_path / "pilot")
    (tmp_path / "pilot").mkdir()
    (tmp_path / "pilot" / "pilot.token").write_text("pilot-token-" + uuid.uuid4().hex)
    return root


def refusal(image: str, allowed: tuple[str, ...], **options: object) -> str:
    with pytest.raises(ImageNotAllowed) as caught:
        allowed_image(image, allowed, **options)  # type: ignore[arg-type]
    return caught.value.reason


def test_image_inside_an_allowed_location_resolves_to_its_real_path(site: Path) -> None:
    resolved = allowed_image(str(site / "library" / "el9"), (str(site),))
    assert resolved == str(site / ".flat" / "ab" / "el9")
    single_file = site / "el9.sif"
    single_file.write_bytes(b"SIF")
    assert allowed_image(str(single_file), (str(single_file),)) == str(single_file)


def test_links_out_of_the_location_and_kernel_file_systems_are_refused(
    site: Path, tmp_path: Path
) -> None:
    allowed = (str(site),)
    assert refusal(str(site / "library" / "proc"), allowed) == "/proc is never an image"
    assert refusal("/proc", ("/",)) == "/proc is never an image"
    assert refusal("/", ("/",)) == "it holds /proc"
    assert refusal(str(site / "library" / "pilot"), allowed).startswith(
        "not in a location this site allows for images"
    )  # a link out of the location, to the pilot's directory
    assert refusal(str(tmp_path / "elsewhere"), allowed) == (
        f"not in a location this site allows for images ({site})"
    )


def test_pilot_directory_is_never_an_image_even_where_allowed(tmp_path: Path) -> None:
    pilot = str(tmp_path / "pilot")
    assert refusal(pilot, (str(tmp_path),), protected=[pilot]) == ("it is in the pilot's directory")
    assert refusal(str(tmp_path), (str(tmp_path),), protected=[pilot]) == (
        "it holds the pilot's directory"
    )
    assert refusal(f"{pilot}/job_8/rootfs", (str(tmp_path),), protected=[pilot]) == (
        "it is in the pilot's directory"
    )


def test_relative_dotdot_and_remote_images(site: Path) -> None:
    allowed = (str(site),)
    assert refusal("images/el9", allowed) == "not an absolute path"
    assert refusal(f"{site}/library/../../pilot", allowed) == "'..' in the path"
    assert allowed_image("docker://almalinux:9", allowed) == "docker://almalinux:9"
    assert refusal("docker://almalinux:9", allowed, remote_ok=False) == (
        "images fetched from a registry are not allowed here"
    )


# -------------------------------------------------------------- whole jobs in bwrap


def run(tmp_path: Path, transport: DirectoryTransport, site: Path, image: str) -> JobOutcome:
    settings = ContainerSettings(runtimes=("bwrap",), allowed_images=(str(site),))
    config = WrapperConfig(allow_plain=False, containers=settings, kill_grace_s=0.5)
    job = assignment(container=image, executable="sh", arguments=["-c", "ls /"])
    return JobRun(job, tmp_path / "pilot" / "job_7", transport, config).run()


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("/proc", "/proc: /proc is never an image"),
        ("pilot", "it is in the pilot's directory"),
        ("link-to-pilot", "it is in the pilot's directory"),
        ("link-to-proc", "/proc is never an image"),
    ],
)
def test_job_naming_a_forbidden_image_fails_as_its_own_fault(
    tmp_path: Path, transport: DirectoryTransport, site: Path, name: str, why: str
) -> None:
    image = {
        "/proc": "/proc",
        "pilot": str(tmp_path / "pilot"),
        "link-to-pilot": str(site / "library" / "pilot"),
        "link-to-proc": str(site / "library" / "proc"),
    }[name]
    outcome = run(tmp_path, transport, site, image)
    assert outcome.status == JobStatus.FAILED
    assert outcome.minor_status.startswith(f"{NOT_ALLOWED}: {image}: ")
    assert why in outcome.minor_status
    assert not outcome.infrastructure_error  # the job's fault: not rescheduled
    assert not (tmp_path / "pilot" / "job_7" / "std.out").exists()  # nothing ran


def test_allowed_image_reached_through_a_link_in_its_location_runs(
    tmp_path: Path, transport: DirectoryTransport, site: Path
) -> None:
    outcome = run(tmp_path, transport, site, str(site / "library" / "el9"))
    assert outcome.status == JobStatus.DONE, outcome.minor_status
    listing = (tmp_path / "pilot" / "job_7" / "std.out").read_text().split()
    assert "busybox" not in listing and {"bin", "etc", "srv"} <= set(listing)


def test_site_default_image_is_the_sites_choice(
    tmp_path: Path, transport: DirectoryTransport, site: Path
) -> None:
    # Outside allowed_images, but configured by the site itself: used as is.
    image = build_rootfs(tmp_path / "site-image")
    settings = ContainerSettings(runtimes=("bwrap",), default_image=str(image))
    config = dataclasses.replace(WrapperConfig(kill_grace_s=0.5), containers=settings)
    outcome = JobRun(
        assignment(executable="true"), tmp_path / "pilot" / "job_7", transport, config
    ).run()
    assert outcome.status == JobStatus.DONE, outcome.minor_status
    assert os.path.isdir(image / "bin")
