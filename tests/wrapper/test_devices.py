"""A payload sees its own cores and GPUs only: variables, CPU pinning, device files in
bubblewrap (for real), ``--nv``/``--rocm`` in Apptainer (command lines pinned, whole jobs
against the stand-in binary)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from protocol import JobStatus
from tests.fake_gpus import make_fake_gpu_node
from tests.wrapper.conftest import IMAGE_LOCATIONS, DirectoryTransport, assignment
from tests.wrapper.rootfs import build_rootfs
from tests.wrapper.test_apptainer import ISOLATION, run_with, stand_in, workdir_options
from wrapper.devices import (
    THREAD_VARIABLES,
    Allocation,
    GpuDevice,
    container_path,
    device_binds,
    gpu_env,
)
from wrapper.job import ContainerSettings, JobOutcome, JobRun, WrapperConfig

PLAIN = WrapperConfig(allow_plain=True, kill_grace_s=0.5)
BWRAP = WrapperConfig(
    allow_plain=False,
    containers=ContainerSettings(runtimes=("bwrap",), allowed_images=IMAGE_LOCATIONS),
    kill_grace_s=0.5,
)
SHOW = (
    "echo CUDA=${CUDA_VISIBLE_DEVICES-unset} ROCR=${ROCR_VISIBLE_DEVICES-unset} "
    "GPUS=$GRIDPILOT_GPUS OMP=$OMP_NUM_THREADS NSLOTS=$NSLOTS MKL=$MKL_NUM_THREADS; "
    "grep Cpus_allowed_list /proc/self/status"
)


def run(
    tmp_path: Path,
    transport: DirectoryTransport,
    config: WrapperConfig,
    allocation: Allocation,
    **fields: object,
) -> tuple[JobOutcome, str]:
    workdir = tmp_path / "pilot" / "job_7"
    job = JobRun(assignment(**fields), workdir, transport, config, allocation=allocation)
    outcome = job.run()
    return outcome, (workdir / "std.out").read_text()


def gpu(node_dev: Path, index: str, minor: int) -> GpuDevice:
    shared = [str(node_dev / name) for name in ("nvidiactl", "nvidia-uvm")]
    return GpuDevice(index, "nvidia", (str(node_dev / f"nvidia{minor}"), *shared))


def test_variables_and_binds_are_the_jobs_own() -> None:
    a100 = GpuDevice("1", "nvidia", ("/dev/nvidia1", "/dev/nvidiactl"))
    mi250 = GpuDevice("0", "amd", ("/dev/kfd", "/dev/dri/renderD128"))
    assert gpu_env([a100, mi250]) == {
        "CUDA_VISIBLE_DEVICES": "1",
        "ROCR_VISIBLE_DEVICES": "0",
        "GRIDPILOT_GPUS": "2",
    }
    assert gpu_env([]) == {
        "CUDA_VISIBLE_DEVICES": "",
        "ROCR_VISIBLE_DEVICES": "",
        "GRIDPILOT_GPUS": "0",
    }
    assert container_path("/tmp/node/dev/dri/renderD129") == "/dev/dri/renderD129"
    assert container_path("/dev/nvidia3") == "/dev/nvidia3"


def test_plain_payload_is_told_its_cores_and_gpus_and_pinned(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    before = os.sched_getaffinity(0)
    cpu = max(before)
    given = Allocation(cpus=(cpu,), gpus=(GpuDevice("2", "nvidia"), GpuDevice("3", "nvidia")))
    outcome, out = run(
        tmp_path, transport, PLAIN, given, executable="sh", arguments=["-c", SHOW], cores=2
    )
    assert outcome.status is JobStatus.DONE, outcome.minor_status
    first, second = out.splitlines()
    assert first == "CUDA=2,3 ROCR= GPUS=2 OMP=2 NSLOTS=2 MKL=2"
    assert second.split() == ["Cpus_allowed_list:", str(cpu)]
    # The thread that started it (the job's thread in a pilot) is not left pinned.
    assert os.sched_getaffinity(0) == before


def test_a_job_given_no_gpu_sees_none_and_keeps_its_own_thread_count(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    outcome, out = run(
        tmp_path,
        transport,
        PLAIN,
        Allocation(),
        executable="sh",
        arguments=["-c", SHOW],
        cores=4,
        description={"ExecutionEnvironment": ["OMP_NUM_THREADS=1"]},
    )
    assert outcome.status is JobStatus.DONE, outcome.minor_status
    assert out.splitlines()[0] == "CUDA= ROCR= GPUS=0 OMP=1 NSLOTS=4 MKL=4"
    assert len(THREAD_VARIABLES) >= 8


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rootfs(tmp_path_factory.mktemp("image") / "rootfs")


def test_bubblewrap_binds_the_jobs_gpu_devices_only(
    tmp_path: Path, transport: DirectoryTransport, rootfs: Path
) -> None:
    node = make_fake_gpu_node(tmp_path / "node")
    t4 = gpu(node.dev_dir, "2", 3)  # the T4 whose device minor is 3
    binds = device_binds([t4, gpu(node.dev_dir, "3", 2)])
    assert [inside for _host, inside in binds] == [
        "/dev/nvidia3",
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia2",
    ]
    script = "ls /dev | grep nvidia | tr '\\n' ' '; echo; echo CUDA=$CUDA_VISIBLE_DEVICES"
    outcome, out = run(
        tmp_path, transport, BWRAP, Allocation(gpus=(t4,)),
        container=str(rootfs), executable="sh", arguments=["-c", script],
    )  # fmt: skip
    assert outcome.status is JobStatus.DONE, outcome.minor_status
    devices, cuda = out.splitlines()
    assert devices.split() == ["nvidia-uvm", "nvidia3", "nvidiactl"]
    assert cuda == "CUDA=2"
    none_given, out = run(
        tmp_path / "again", transport, BWRAP, Allocation(),
        container=str(rootfs), executable="sh", arguments=["-c", script],
    )  # fmt: skip
    assert none_given.status is JobStatus.DONE, none_given.minor_status
    assert out.splitlines() == ["", "CUDA="]


def test_bubblewrap_refuses_a_gpu_job_it_has_no_devices_for(
    tmp_path: Path, transport: DirectoryTransport, rootfs: Path
) -> None:
    job = assignment(container=str(rootfs), executable="true", description={"Tags": ["GPU"]})
    outcome = JobRun(job, tmp_path / "job_7", transport, BWRAP).run()
    assert outcome.status is JobStatus.FAILED and outcome.infrastructure_error
    assert outcome.minor_status.startswith("Runtime Unavailable: no runtime for a GPU container")


@pytest.mark.parametrize(
    ("gpus", "flags", "cuda", "rocr"),
    [
        ((GpuDevice("1", "nvidia"),), ["--nv"], "1", ""),
        ((GpuDevice("0", "amd"), GpuDevice("1", "amd")), ["--rocm"], "", "0,1"),
        ((GpuDevice("3", "nvidia"), GpuDevice("0", "amd")), ["--nv", "--rocm"], "3", "0"),
        ((), [], "", ""),
    ],
)
def test_apptainer_gets_the_vendor_flag_and_the_devices_by_variable(
    tmp_path: Path,
    transport: DirectoryTransport,
    gpus: tuple[GpuDevice, ...],
    flags: list[str],
    cuda: str,
    rocr: str,
) -> None:
    sif = tmp_path / "cuda.sif"
    sif.write_bytes(b"SIF image stand-in")
    binary = stand_in(tmp_path, "exit 0")
    outcome = run_with(
        tmp_path, transport, binary, str(sif), executable="nvidia-smi",
        allocation=Allocation(gpus=gpus), gpus=[g.id for g in gpus],
    )  # fmt: skip
    assert outcome.status is JobStatus.DONE, outcome.minor_status
    argv = (tmp_path / "fake" / "started.argv").read_text().splitlines()
    workdir = tmp_path / "pilot" / "job_7"
    assert argv == [
        "--quiet", "exec", *flags,
        *ISOLATION, *workdir_options(workdir), str(sif), "nvidia-smi",
    ]  # fmt: skip
    env = (tmp_path / "fake" / "started.env").read_text().splitlines()
    assert f"APPTAINERENV_CUDA_VISIBLE_DEVICES={cuda}" in env
    assert f"APPTAINERENV_ROCR_VISIBLE_DEVICES={rocr}" in env
    assert f"APPTAINERENV_GRIDPILOT_GPUS={len(gpus)}" in env
