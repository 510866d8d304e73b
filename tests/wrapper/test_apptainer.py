"""Apptainer: the exact command lines spython builds, case by case, and the whole wrapper path.

Apptainer is not installed where these tests usually run, so the command-line tests are
the coverage. Whole jobs go through JobRun against a stand-in binary (a shell script at
the edge of the machine that records what it was started with and answers like Apptainer),
and against the real binary where there is one (skipped otherwise, not counted).
"""

from __future__ import annotations

import stat
import uuid
from pathlib import Path
from typing import Optional

import pytest

from protocol import JobStatus
from tests.wrapper.conftest import IMAGE_LOCATIONS, DirectoryTransport, assignment
from tests.wrapper.rootfs import build_rootfs
from wrapper.apptainer import ApptainerRuntime, build_invocation, find_binary
from wrapper.container import Bind, node_binds
from wrapper.devices import Allocation
from wrapper.errors import ContainerRuntimeFailed
from wrapper.job import ContainerSettings, JobOutcome, JobRun, WrapperConfig
from wrapper.runtime import RunSpec

BINARY = "/opt/apptainer/bin/apptainer"
TOKEN = "pilot-token-" + uuid.uuid4().hex
ISOLATION = ["--contain", "--ipc", "--pid", "--cleanenv"]


def spec_for(workdir: Path, image: str, **extra: object) -> RunSpec:
    fields: dict[str, object] = {
        "argv": ["python3", "analysis.py", "--events", "10"],
        "cwd": workdir,
        "env": {"PATH": "/usr/bin:/bin", "HOME": "/srv", "PWD": "/srv", "GRIDPILOT_JOB_ID": "7"},
        "stdout_path": workdir / "std.out",
        "stderr_path": workdir / "std.err",
        "image": image,
    }
    fields.update(extra)
    return RunSpec(**fields)  # type: ignore[arg-type]


def workdir_options(workdir: Path) -> list[str]:
    return ["--home", f"{workdir}:/srv", "--pwd", "/srv"]


def test_sif_image_command_line(tmp_path: Path) -> None:
    invocation = build_invocation(
        BINARY, spec_for(tmp_path, "/cvmfs/unpacked/el9.sif"), [], tmp_path / "pilot"
    )
    assert invocation.argv == [
        BINARY, "--quiet", "exec",
        *ISOLATION, *workdir_options(tmp_path),
        "/cvmfs/unpacked/el9.sif", "python3", "analysis.py", "--events", "10",
    ]  # fmt: skip


def test_directory_image_with_cvmfs_and_site_binds(tmp_path: Path) -> None:
    (tmp_path / "cvmfs").mkdir()
    (tmp_path / "calib").mkdir()
    binds = [Bind(f"{tmp_path}/cvmfs", "/cvmfs", read_only=True), Bind(f"{tmp_path}/calib", "/c")]
    invocation = build_invocation(
        BINARY, spec_for(tmp_path, "/images/el9"), binds, tmp_path / "pilot"
    )
    assert invocation.argv == [
        BINARY, "--quiet", "exec",
        "--bind", f"{tmp_path}/cvmfs:/cvmfs:ro", "--bind", f"{tmp_path}/calib:/c",
        *ISOLATION, *workdir_options(tmp_path),
        "/images/el9", "python3", "analysis.py", "--events", "10",
    ]  # fmt: skip


def test_bind_source_vanishing_after_the_check_is_a_runtime_failure(tmp_path: Path) -> None:
    binds = [Bind(f"{tmp_path}/gone", "/gone")]
    with pytest.raises(ContainerRuntimeFailed):
        build_invocation(BINARY, spec_for(tmp_path, "/images/el9"), binds, tmp_path)


def test_gpu_job_gets_nv(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, "/images/cuda.sif", gpu=True, argv=["nvidia-smi"])
    invocation = build_invocation(BINARY, spec, [], tmp_path / "pilot")
    assert invocation.argv == [
        BINARY, "--quiet", "exec", "--nv",
        *ISOLATION, *workdir_options(tmp_path), "/images/cuda.sif", "nvidia-smi",
    ]  # fmt: skip


def test_job_without_network_gets_network_none(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, "/images/el9.sif", network=False, argv=["true"])
    invocation = build_invocation(BINARY, spec, [], tmp_path / "pilot")
    assert invocation.argv == [
        BINARY, "--quiet", "exec",
        *ISOLATION, *workdir_options(tmp_path), "--net", "--network", "none",
        "/images/el9.sif", "true",
    ]  # fmt: skip


def test_shipped_script_runs_from_srv_and_gets_its_execute_bit(tmp_path: Path) -> None:
    (tmp_path / "job.sh").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "job.sh").chmod(0o644)
    spec = spec_for(tmp_path, "/images/el9.sif", argv=["job.sh", "a b"])
    invocation = build_invocation(BINARY, spec, [], tmp_path / "pilot")
    assert invocation.argv[-3:] == ["/images/el9.sif", "/srv/job.sh", "a b"]
    assert (tmp_path / "job.sh").stat().st_mode & stat.S_IXUSR


def test_environment_is_the_payloads_allow_list_prefixed_and_dirs_in_the_pilot_dir(
    tmp_path: Path,
) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", "A": "x,y=z"}
    spec = spec_for(tmp_path, "/images/el9.sif", env=env)
    invocation = build_invocation(BINARY, spec, [], tmp_path / "pilot")
    assert invocation.env == {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "APPTAINER_CACHEDIR": str(tmp_path / "pilot" / "apptainer" / "cache"),
        "APPTAINER_TMPDIR": str(tmp_path / "pilot" / "apptainer" / "tmp"),
        "APPTAINERENV_PATH": "/usr/bin:/bin",
        "APPTAINERENV_LANG": "C.UTF-8",
        "APPTAINERENV_A": "x,y=z",
    }


def test_singularity_binary_gets_singularity_prefixes(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, "/images/el9.sif", env={"A": "1"}, argv=["true"])
    invocation = build_invocation("/usr/bin/singularity", spec, [], tmp_path)
    assert invocation.argv[:3] == ["/usr/bin/singularity", "--quiet", "exec"]
    assert invocation.env["SINGULARITYENV_A"] == "1"
    assert invocation.env["SINGULARITY_CACHEDIR"] == str(tmp_path / "apptainer" / "cache")
    assert not any(name.startswith("APPTAINER") for name in invocation.env)


def test_no_token_reaches_the_command_line_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDPILOT_TOKEN", TOKEN)
    (tmp_path / "pilot.token").write_text(TOKEN)
    spec = spec_for(tmp_path / "job_7", "/images/el9.sif")
    invocation = build_invocation(BINARY, spec, node_binds(()), tmp_path)
    text = " ".join(invocation.argv) + " ".join(f"{k}={v}" for k, v in invocation.env.items())
    assert TOKEN not in text and "GRIDPILOT_TOKEN" not in text
    assert {"--contain", "--cleanenv"} <= set(invocation.argv)
    bound = [
        invocation.argv[i + 1] for i, a in enumerate(invocation.argv) if a in ("--bind", "--home")
    ]
    assert all(b == f"{tmp_path / 'job_7'}:/srv" or b.startswith("/cvmfs:") for b in bound)


def test_missing_site_bind_sources_are_dropped_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "calib").mkdir()
    binds = node_binds((f"{tmp_path}/calib:/calib:ro", f"{tmp_path}/gone"), str(tmp_path / "cv"))
    assert binds == [Bind(f"{tmp_path}/calib", "/calib", read_only=True)]
    assert f"{tmp_path}/gone dropped" in caplog.text


def test_binary_from_config_then_path_apptainer_before_singularity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("singularity", "apptainer"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert find_binary() == str(bin_dir / "apptainer")
    (bin_dir / "apptainer").unlink()
    assert find_binary() == str(bin_dir / "singularity")
    assert find_binary(str(bin_dir / "singularity")) == str(bin_dir / "singularity")
    assert find_binary(str(tmp_path / "nowhere")) is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert not ApptainerRuntime().available()


# ----------------------------------------------------- whole jobs, stand-in binary


STAND_IN = """#!/bin/sh
# Records how it was started, then behaves like Apptainer would for this test.
printf '%s\\n' "$@" > "{record}.argv"
env > "{record}.env"
{behaviour}
"""


def stand_in(tmp_path: Path, behaviour: str) -> Path:
    path = tmp_path / "fake" / "apptainer"
    path.parent.mkdir(exist_ok=True)
    path.write_text(STAND_IN.format(record=tmp_path / "fake" / "started", behaviour=behaviour))
    path.chmod(0o755)
    return path


def run_with(
    tmp_path: Path,
    transport: DirectoryTransport,
    binary: Path,
    image: str,
    allocation: Optional[Allocation] = None,
    **fields: object,
) -> JobOutcome:
    settings = ContainerSettings(
        runtimes=("apptainer",), apptainer_path=str(binary), allowed_images=IMAGE_LOCATIONS
    )
    config = WrapperConfig(allow_plain=False, containers=settings, kill_grace_s=0.5)
    job = assignment(container=image, **fields)
    workdir = tmp_path / "pilot" / "job_7"
    return JobRun(job, workdir, transport, config, allocation=allocation).run()


@pytest.fixture
def sif(tmp_path: Path) -> str:
    image = tmp_path / "el9.sif"
    image.write_bytes(b"SIF image stand-in")
    return str(image)


def test_whole_job_runs_the_built_command_without_the_token(
    tmp_path: Path, transport: DirectoryTransport, sif: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDPILOT_TOKEN", TOKEN)
    binary = stand_in(tmp_path, "echo payload output; exit 0")
    outcome = run_with(
        tmp_path, transport, binary, sif, executable="echo", arguments=["hi"],
        description={"Tags": ["GPU"]},
    )  # fmt: skip
    assert outcome.status == JobStatus.DONE, outcome.minor_status
    argv = (tmp_path / "fake" / "started.argv").read_text().splitlines()
    job_dir = tmp_path / "pilot" / "job_7"
    assert argv == [
        "--quiet", "exec", "--nv",
        *ISOLATION, *workdir_options(job_dir), sif, "echo", "hi",
    ]  # fmt: skip
    env = (tmp_path / "fake" / "started.env").read_text()
    assert TOKEN not in env and "GRIDPILOT_TOKEN" not in env
    assert "APPTAINERENV_HOME" not in env
    assert "APPTAINERENV_GRIDPILOT_WORKDIR=/srv\n" in env
    assert (tmp_path / "pilot" / "apptainer" / "cache").is_dir()
    assert (job_dir / "std.out").read_text() == "payload output\n"


def test_apptainer_fatal_about_the_image_is_container_image_not_found(
    tmp_path: Path, transport: DirectoryTransport, sif: str
) -> None:
    fatal = f"echo 'FATAL:   could not open image {sif}: image format not recognized' >&2; exit 255"
    outcome = run_with(tmp_path, transport, stand_in(tmp_path, fatal), sif, executable="true")
    assert outcome.status == JobStatus.FAILED
    assert outcome.minor_status.startswith("Container Image Not Found: could not open image")
    assert outcome.infrastructure_error
    assert outcome.broken_runtime == ""


def test_apptainer_fatal_of_its_own_marks_the_runtime_broken(
    tmp_path: Path, transport: DirectoryTransport, sif: str
) -> None:
    fatal = (
        "echo 'FATAL:   container creation failed: mount /proc: permission denied' >&2; exit 255"
    )
    outcome = run_with(tmp_path, transport, stand_in(tmp_path, fatal), sif, executable="true")
    assert outcome.minor_status.startswith("Container Runtime Failed: container creation failed")
    assert outcome.infrastructure_error
    assert outcome.broken_runtime == "apptainer"


def test_payload_exiting_255_is_the_payloads_failure(
    tmp_path: Path, transport: DirectoryTransport, sif: str
) -> None:
    outcome = run_with(tmp_path, transport, stand_in(tmp_path, "exit 255"), sif, executable="x")
    assert (outcome.status, outcome.exit_code) == (JobStatus.FAILED, 255)
    assert outcome.minor_status == "Application Finished With Errors"
    assert not outcome.infrastructure_error


def test_executable_missing_in_the_image_is_the_jobs_fault(
    tmp_path: Path, transport: DirectoryTransport, sif: str
) -> None:
    fatal = "echo 'FATAL:   \"nope\": executable file not found in $PATH' >&2; exit 255"
    outcome = run_with(tmp_path, transport, stand_in(tmp_path, fatal), sif, executable="nope")
    assert (outcome.exit_code, outcome.infrastructure_error) == (127, False)


def test_missing_image_is_found_before_starting(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    binary = stand_in(tmp_path, "exit 0")
    outcome = run_with(tmp_path, transport, binary, str(tmp_path / "gone.sif"), executable="true")
    assert outcome.minor_status.startswith("Container Image Not Found")
    assert outcome.infrastructure_error
    assert not (tmp_path / "fake" / "started.argv").exists()


# ------------------------------------------------------------------ the real binary


@pytest.mark.skipif(find_binary() is None, reason="no apptainer/singularity on this node")
def test_real_apptainer_runs_a_directory_image(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    image = build_rootfs(tmp_path / "rootfs")
    settings = ContainerSettings(runtimes=("apptainer",), allowed_images=IMAGE_LOCATIONS)
    config = WrapperConfig(allow_plain=False, containers=settings, kill_grace_s=0.5)
    script = "pwd; echo $HOME; env"
    run = JobRun(
        assignment(container=str(image), executable="sh", arguments=["-c", script]),
        tmp_path / "pilot" / "job_7",
        transport,
        config,
    )
    outcome = run.run()
    assert outcome.status == JobStatus.DONE, outcome.minor_status
    out = (tmp_path / "pilot" / "job_7" / "std.out").read_text().splitlines()
    assert out[:2] == ["/srv", "/srv"]
    assert not any("GRIDPILOT_TOKEN" in line for line in out)
