"""Which runtime runs a job: the decision table, with the node's real bwrap.

Apptainer is made present with a stand-in executable configured as ``apptainer_path``
(choosing a runtime only asks whether its binary is there).
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import JobStatus
from tests.wrapper.conftest import IMAGE_LOCATIONS, DirectoryTransport, assignment
from tests.wrapper.rootfs import build_rootfs
from wrapper.container import parse_bind
from wrapper.errors import RuntimeFailure, RuntimeUnavailable
from wrapper.job import JobRun, WrapperConfig
from wrapper.selection import (
    ContainerSettings,
    advertised_tags,
    choose_runtime,
    job_network,
    job_wants_gpu,
    offered_runtimes,
    usable_runtimes,
    without_runtime,
)

NO_APPTAINER = "/nonexistent/apptainer"


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rootfs(tmp_path_factory.mktemp("image") / "rootfs")


@pytest.fixture(scope="module")
def apptainer(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("bin") / "apptainer"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture(scope="module")
def sif(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("images") / "el9.sif"
    path.write_bytes(b"SIF")
    return str(path)


def settings(**fields: object) -> ContainerSettings:
    values: dict[str, object] = {"apptainer_path": NO_APPTAINER, "allowed_images": IMAGE_LOCATIONS}
    values.update(fields)
    return ContainerSettings(**values)  # type: ignore[arg-type]


def test_no_image_runs_plain_only_where_the_site_allows_it() -> None:
    assert choose_runtime("", False, settings(), allow_plain=True).runtime.name == "plain"
    with pytest.raises(RuntimeUnavailable, match="plain execution is not allowed"):
        choose_runtime("", False, settings(), allow_plain=False)


def test_site_requiring_containers_never_runs_plain() -> None:
    with pytest.raises(RuntimeUnavailable, match="requires a container"):
        choose_runtime("", False, settings(required=True), allow_plain=True)


def test_default_image_is_used_for_jobs_without_one(rootfs: Path) -> None:
    choice = choose_runtime("", False, settings(default_image=str(rootfs)), allow_plain=True)
    assert (choice.runtime.name, choice.image) == ("bwrap", str(rootfs))
    other = str(rootfs.parent / "other")
    job_image = choose_runtime(other, False, settings(default_image=str(rootfs)), True)
    assert job_image.image == other


def test_preference_order_decides_between_usable_runtimes(rootfs: Path, apptainer: str) -> None:
    both = settings(apptainer_path=apptainer)
    assert usable_runtimes(both) == ["apptainer", "bwrap"]
    assert choose_runtime(str(rootfs), False, both, False).runtime.name == "apptainer"
    bwrap_first = dataclasses.replace(both, runtimes=("bwrap", "apptainer"))
    assert choose_runtime(str(rootfs), False, bwrap_first, False).runtime.name == "bwrap"


def test_runtime_missing_on_the_node_is_skipped(rootfs: Path) -> None:
    assert usable_runtimes(settings()) == ["bwrap"]
    assert choose_runtime(str(rootfs), False, settings(), False).runtime.name == "bwrap"


def test_sif_needs_apptainer(sif: str, apptainer: str) -> None:
    with pytest.raises(RuntimeUnavailable, match=r"usable here: bwrap\)"):
        choose_runtime(sif, False, settings(), allow_plain=True)
    choice = choose_runtime(sif, False, settings(apptainer_path=apptainer), allow_plain=True)
    assert choice.runtime.name == "apptainer"


def test_gpu_jobs_need_a_runtime_that_exposes_gpus(rootfs: Path, apptainer: str) -> None:
    with pytest.raises(RuntimeUnavailable, match="GPU container"):
        choose_runtime(str(rootfs), True, settings(), allow_plain=True)
    gpu = choose_runtime(str(rootfs), True, settings(apptainer_path=apptainer), True)
    assert gpu.runtime.name == "apptainer"


def test_image_on_a_node_without_allowed_runtimes_is_unavailable(rootfs: Path) -> None:
    with pytest.raises(RuntimeUnavailable, match=r"site allows: none; usable here: none"):
        choose_runtime(str(rootfs), False, settings(runtimes=()), allow_plain=True)


@given(
    job_image=st.sampled_from(["", "/images/x"]),
    default_image=st.sampled_from(["", "/images/default"]),
    required=st.booleans(),
    allow_plain=st.booleans(),
    runtimes=st.sampled_from([(), ("bwrap",), ("apptainer",), ("apptainer", "bwrap")]),
)
def test_plain_is_chosen_exactly_when_no_image_applies_and_the_site_allows_it(
    job_image: str, default_image: str, required: bool, allow_plain: bool, runtimes: tuple[str, ...]
) -> None:
    site = settings(
        default_image=default_image,
        required=required,
        runtimes=runtimes,
        allowed_images=("/images",),
    )
    plain_expected = not job_image and not default_image and not required and allow_plain
    try:
        choice = choose_runtime(job_image, False, site, allow_plain)
    except RuntimeUnavailable:
        assert not plain_expected
        return
    assert (choice.runtime.name == "plain") == plain_expected
    if choice.runtime.name != "plain":
        assert choice.image == (job_image or default_image)
        assert choice.runtime.name in runtimes


def test_gpu_and_network_come_from_the_job_and_the_site() -> None:
    assert job_wants_gpu(assignment(description={"Tags": ["8Processors", "gpu"]}))
    assert job_wants_gpu(assignment(description={"RequiredTag": "GPU"}))
    assert not job_wants_gpu(assignment(description={"Tags": ["GPUs-not-really"]}))
    site = ContainerSettings()
    assert job_network(assignment(), site)
    assert not job_network(assignment(description={"Network": "no"}), site)
    assert not job_network(assignment(description={"Network": False}), site)
    assert not job_network(assignment(), dataclasses.replace(site, network=False))


@given(st.text(alphabet="/:abrwo.", max_size=20))
def test_bind_specs_parse_or_are_refused_clearly(text: str) -> None:
    try:
        bind = parse_bind(text)
    except RuntimeFailure as exc:
        assert text in str(exc)
        return
    assert os.path.isabs(bind.source) and os.path.isabs(bind.destination)
    assert bind.apptainer_spec().startswith(bind.source + ":")


# ------------------------------------------------------------------- whole jobs


def test_site_default_image_runs_a_job_without_image_in_bwrap(
    tmp_path: Path, transport: DirectoryTransport, rootfs: Path
) -> None:
    site = settings(default_image=str(rootfs), required=True)
    config = WrapperConfig(containers=site, kill_grace_s=0.5)
    run = JobRun(assignment(executable="pwd"), tmp_path / "job_7", transport, config)
    outcome = run.run()
    assert outcome.status == JobStatus.DONE, outcome.minor_status
    assert (tmp_path / "job_7" / "std.out").read_text() == "/srv\n"


def test_plain_payload_sees_no_token_in_env_or_work_dir(
    tmp_path: Path, transport: DirectoryTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain execution cannot hide files from the same uid: the token stays out of the
    payload's environment and its work dir; the token file itself lives elsewhere."""
    token = "pilot-token-" + uuid.uuid4().hex
    (tmp_path / "pilot.token").write_text(token)
    monkeypatch.setenv("GRIDPILOT_TOKEN", token)
    monkeypatch.setenv("GRIDPILOT_TOKEN_FILE", str(tmp_path / "pilot.token"))
    script = 'env; grep -rl "$0" . || echo nothing-found'
    run = JobRun(
        assignment(executable="/bin/sh", arguments=["-c", script, "pilot-token-"]),
        tmp_path / "pilot" / "job_7",
        transport,
        WrapperConfig(kill_grace_s=0.5),
    )
    outcome = run.run()
    out = (tmp_path / "pilot" / "job_7" / "std.out").read_text()
    assert outcome.status == JobStatus.DONE, outcome.minor_status
    assert token not in out and "GRIDPILOT_TOKEN" not in out
    assert out.endswith("nothing-found\n")


def test_pilot_offers_what_is_allowed_installed_and_seen_working(apptainer: str) -> None:
    site = settings(apptainer_path=apptainer)
    assert offered_runtimes(site, {}) == ["apptainer", "bwrap"]
    assert offered_runtimes(site, {"container_runtimes": ["singularity"]}) == ["apptainer"]
    assert offered_runtimes(site, {"container_runtimes": []}) == []
    broken = without_runtime(site, "apptainer")
    assert usable_runtimes(broken) == ["bwrap"]
    tags = ["GPU", "apptainer", "singularity", "bwrap", "cvmfs:sw.example.org"]
    assert advertised_tags(tags, ["apptainer"]) == ["GPU", "bwrap", "cvmfs:sw.example.org"]
