"""bubblewrap for real: whole jobs through JobRun in a busybox directory image."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from protocol import JobStatus
from tests.wrapper.conftest import IMAGE_LOCATIONS, DirectoryTransport, SandboxMaker, assignment
from tests.wrapper.rootfs import build_rootfs
from wrapper.bubblewrap import BubblewrapRuntime, BubblewrapSettings, build_command
from wrapper.container import Bind
from wrapper.devices import core_env, gpu_env
from wrapper.job import ContainerSettings, JobOutcome, JobRun, WrapperConfig
from wrapper.runtime import RunSpec

BWRAP_ONLY = ContainerSettings(runtimes=("bwrap",), allowed_images=IMAGE_LOCATIONS)
CONFIG = WrapperConfig(
    allow_plain=False, containers=BWRAP_ONLY, kill_grace_s=0.5, upload_backoff_s=0.01
)
TOKEN = "pilot-token-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rootfs(tmp_path_factory.mktemp("image") / "rootfs")


def job_dir(tmp_path: Path) -> Path:
    return tmp_path / "pilot" / "job_7"


def run_job(
    tmp_path: Path,
    transport: DirectoryTransport,
    config: WrapperConfig = CONFIG,
    **fields: object,
) -> JobOutcome:
    run = JobRun(assignment(**fields), job_dir(tmp_path), transport, config)
    return run.run()


def stdout_of(tmp_path: Path) -> str:
    return (job_dir(tmp_path) / "std.out").read_text()


def test_output_and_exit_code_come_back(
    tmp_path: Path, transport: DirectoryTransport, rootfs: Path
) -> None:
    outcome = run_job(
        tmp_path,
        transport,
        container=str(rootfs),
        executable="sh",
        arguments=["-c", "echo hello; echo oops >&2; exit 3"],
    )
    assert (outcome.status, outcome.exit_code) == (JobStatus.FAILED, 3)
    assert outcome.minor_status == "Application Finished With Errors"
    assert not outcome.infrastructure_error
    assert stdout_of(tmp_path) == "hello\n"
    assert (job_dir(tmp_path) / "std.err").read_text() == "oops\n"


def test_work_dir_is_srv_cwd_and_home_and_results_land_on_the_node(
    tmp_path: Path, transport: DirectoryTransport, make_sandbox: SandboxMaker, rootfs: Path
) -> None:
    sandbox = make_sandbox({"data.txt": "input data\n", "run.sh": "#!/bin/sh\necho script ran\n"})
    script = "pwd; echo $HOME; cat data.txt; sh run.sh; echo result > out.txt"
    outcome = run_job(
        tmp_path,
        transport,
        container=str(rootfs),
        input_sandboxes=[sandbox],
        executable="/bin/sh",
        arguments=["-c", script],
    )
    assert outcome.status == JobStatus.DONE, outcome.minor_status
    assert stdout_of(tmp_path).splitlines() == ["/srv", "/srv", "input data", "script ran"]
    assert (job_dir(tmp_path) / "out.txt").read_text() == "result\n"


def test_shipped_script_by_bare_name_runs_from_the_work_dir(
    tmp_path: Path, transport: DirectoryTransport, make_sandbox: SandboxMaker, rootfs: Path
) -> None:
    sandbox = make_sandbox({"myjob": "#!/bin/sh\necho mine $1\n"})
    outcome = run_job(
        tmp_path,
        transport,
        container=str(rootfs),
        input_sandboxes=[sandbox],
        executable="myjob",
        arguments=["x"],
    )
    assert outcome.status == JobStatus.DONE, outcome.minor_status
    assert stdout_of(tmp_path) == "mine x\n"


def test_payload_sees_neither_the_pilots_token_env_nor_its_files(
    tmp_path: Path, transport: DirectoryTransport, rootfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pilot_dir = tmp_path / "pilot"
    pilot_dir.mkdir()
    token_file = pilot_dir / "pilot.token"
    token_file.write_text(TOKEN)
    monkeypatch.setenv("GRIDPILOT_TOKEN", TOKEN)
    monkeypatch.setenv("GRIDPILOT_TOKEN_FILE", str(token_file))
    script = (
        f"env; ls {pilot_dir} {token_file}; cat {token_file}; "
        "grep -rl pilot-token- /srv /tmp /etc /bin /usr /data /proc/self/environ; echo end"
    )
    outcome = run_job(
        tmp_path, transport, container=str(rootfs), executable="sh", arguments=["-c", script]
    )
    out = stdout_of(tmp_path)
    assert outcome.exit_code == 0, outcome.minor_status
    assert out.endswith("end\n")
    assert TOKEN not in out
    assert "GRIDPILOT_TOKEN" not in out
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env["HOME"] == env["GRIDPILOT_WORKDIR"] == "/srv"
    assert "No such file or directory" in (job_dir(tmp_path) / "std.err").read_text()


def test_environment_is_only_what_the_wrapper_passes(
    tmp_path: Path, transport: DirectoryTransport, rootfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOME_NODE_SETTING", "node-only")
    outcome = run_job(
        tmp_path,
        transport,
        container=str(rootfs),
        executable="env",
        description={"ExecutionEnvironment": ["MY_SETTING=a=b"]},
    )
    assert outcome.status == JobStatus.DONE
    env = dict(line.split("=", 1) for line in stdout_of(tmp_path).splitlines())
    assert env["MY_SETTING"] == "a=b"
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert "SOME_NODE_SETTING" not in env
    assert set(env) <= {
        "PATH", "LANG", "LC_ALL", "TZ", "HOME", "PWD", "MY_SETTING",
        "GRIDPILOT_JOB_ID", "GRIDPILOT_WORKDIR", "SHLVL",
        *core_env(1), *gpu_env([]),
    }  # fmt: skip


def test_namespaces_are_unshared_and_network_follows_the_job(
    tmp_path: Path, transport: DirectoryTransport, rootfs: Path
) -> None:
    script = "echo pid=$$; cat /proc/net/dev; ls /proc"
    outcome = run_job(
        tmp_path,
        transport,
        container=str(rootfs),
        executable="sh",
        arguments=["-c", script],
        description={"Network": "no"},
    )
    assert outcome.status == JobStatus.DONE
    out = stdout_of(tmp_path)
    interfaces = [line.split(":")[0].strip() for line in out.splitlines() if ":" in line]
    assert interfaces == ["lo"]
    pids = [int(name) for name in out.split() if name.isdigit()]
    assert max(pids) < 10  # a fresh PID namespace: only the payload's few processes
    run_job(
        tmp_path, transport, container=str(rootfs), executable="cat", arguments=["/proc/net/dev"]
    )
    shared = [line.split(":")[0].strip() for line in stdout_of(tmp_path).splitlines()]
    host = [line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()]
    assert sorted(shared[2:]) == sorted(host[2:])


def sleepers(marker: str) -> list[psutil.Process]:
    """Live ``sleep MARKER`` processes anywhere on the node."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["cmdline"] == ["sleep", marker] and proc.info["status"] != "zombie":
            found.append(proc)
    return found


def test_kill_reaches_the_whole_tree_inside_the_namespace(
    tmp_path: Path, transport: DirectoryTransport, rootfs: Path
) -> None:
    marker = f"{os.getpid() % 1000 + 1000}.{uuid.uuid4().int % 10**6:06d}"
    script = f"sleep {marker} & setsid sleep {marker} & trap '' TERM; sleep {marker}; wait"
    run = JobRun(
        assignment(container=str(rootfs), executable="sh", arguments=["-c", script]),
        job_dir(tmp_path),
        transport,
        CONFIG,
    )
    deadline = time.monotonic() + 10
    outcome: list[JobOutcome] = []
    worker = threading.Thread(target=lambda: outcome.append(run.run()))
    worker.start()
    while len(sleepers(marker)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sleepers(marker)) == 3
    started_s = time.monotonic()
    run.kill("test over")
    worker.join(timeout=10)
    assert outcome and outcome[0].status == JobStatus.KILLED
    assert time.monotonic() - started_s < 5
    assert sleepers(marker) == []


def test_missing_image_is_an_infrastructure_failure(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    outcome = run_job(
        tmp_path, transport, container=str(tmp_path / "no-such-image"), executable="true"
    )
    assert outcome.status == JobStatus.FAILED
    assert outcome.minor_status.startswith("Container Image Not Found")
    assert outcome.infrastructure_error
    assert outcome.broken_runtime == ""


def test_program_missing_from_the_image_is_the_jobs_fault(
    tmp_path: Path, transport: DirectoryTransport, rootfs: Path
) -> None:
    outcome = run_job(tmp_path, transport, container=str(rootfs), executable="python3")
    assert outcome.minor_status == "Application Not Found: python3"
    assert not outcome.infrastructure_error


def test_program_bwrap_cannot_exec_is_the_jobs_fault(
    tmp_path: Path, transport: DirectoryTransport, rootfs: Path
) -> None:
    outcome = run_job(tmp_path, transport, container=str(rootfs), executable="/etc/not-a-program")
    assert (outcome.status, outcome.exit_code) == (JobStatus.FAILED, 127)
    assert not outcome.infrastructure_error
    assert "bwrap: execvp" in (job_dir(tmp_path) / "std.err").read_text()


def test_failed_bind_is_a_container_runtime_failure(
    tmp_path: Path, transport: DirectoryTransport, rootfs: Path
) -> None:
    # /bin comes read-only from the image: bwrap cannot make a mount point inside it.
    settings = dataclasses.replace(BWRAP_ONLY, binds=(f"{tmp_path}:/bin/extra",))
    config = WrapperConfig(allow_plain=False, containers=settings, kill_grace_s=0.5)
    outcome = run_job(
        tmp_path,
        transport,
        config,
        container=str(rootfs),
        executable="sh",
        arguments=["-c", "touch ran"],
    )
    assert outcome.status == JobStatus.FAILED
    assert outcome.minor_status.startswith("Container Runtime Failed: bwrap:")
    assert outcome.infrastructure_error
    assert outcome.broken_runtime == "bwrap"
    assert not (job_dir(tmp_path) / "ran").exists()


def test_site_binds_are_visible_read_only_and_missing_ones_are_dropped(
    tmp_path: Path, transport: DirectoryTransport, rootfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "site-data"
    shared.mkdir()
    (shared / "calib.txt").write_text("calibration\n")
    binds = (f"{shared}:/data:ro", str(tmp_path / "not-here"))
    config = WrapperConfig(
        allow_plain=False, containers=dataclasses.replace(BWRAP_ONLY, binds=binds)
    )
    script = "cat /data/calib.txt; touch /data/new || echo refused"
    outcome = run_job(
        tmp_path,
        transport,
        config,
        container=str(rootfs),
        executable="sh",
        arguments=["-c", script],
    )
    assert outcome.status == JobStatus.DONE, outcome.minor_status
    assert stdout_of(tmp_path) == "calibration\nrefused\n"
    assert not (shared / "new").exists()
    assert "not-here dropped" in caplog.text


def test_command_line_unshares_everything_and_shares_network_only_when_asked(
    tmp_path: Path, rootfs: Path
) -> None:
    spec = RunSpec(
        argv=["sh"],
        cwd=tmp_path,
        env={"LD_PRELOAD": f"{tmp_path}/lib.so"},
        stdout_path=tmp_path / "o",
        stderr_path=tmp_path / "e",
        image=str(rootfs),
        network=False,
    )
    binds = [Bind("/cvmfs", "/cvmfs", read_only=True)]
    command = build_command("bwrap", spec, rootfs, binds, ["sh"], status_fd=9)
    assert command[:6] == [
        "bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--json-status-fd", "9"
    ]  # fmt: skip
    image_part = command[6 : command.index("--proc")]
    assert image_part == [
        "--ro-bind",
        f"{rootfs}/bin",
        "/bin",
        "--ro-bind",
        f"{rootfs}/data",
        "/data",
        "--ro-bind",
        f"{rootfs}/etc",
        "/etc",
        "--symlink",
        "usr/lib",
        "/lib",
        "--ro-bind",
        f"{rootfs}/usr",
        "/usr",
    ]  # fmt: skip  (the image's own /srv is replaced by the work dir)
    assert command[command.index("--proc") :] == [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--bind",
        str(tmp_path),
        "/srv",
        "--chdir",
        "/srv",
        "--ro-bind",
        "/cvmfs",
        "/cvmfs",
        "--unsetenv",
        "PATH",
        "--setenv",
        "LD_PRELOAD",
        "/srv/lib.so",
        "--",
        "sh",
    ]  # fmt: skip  (the environment is set inside, work-dir paths as the container sees them)
    with_net = dataclasses.replace(spec, network=True)
    assert build_command("bwrap", with_net, rootfs, [], ["sh"], 9)[:3] == [
        "bwrap", "--unshare-all", "--share-net"
    ]  # fmt: skip


def test_unavailable_binary_is_reported(tmp_path: Path) -> None:
    runtime = BubblewrapRuntime(BubblewrapSettings(binary=str(tmp_path / "no-bwrap")))
    assert not runtime.available()


def test_image_holding_the_pilots_directory_is_refused(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    # "/" as the image would bind the pilot's directory, token included, into the container.
    outcome = run_job(tmp_path, transport, container="/", executable="true")
    assert outcome.minor_status == "Container Image Not Allowed: /: it holds /proc"
    assert not outcome.infrastructure_error


def test_site_default_image_holding_the_work_dir_is_refused_too(
    tmp_path: Path, transport: DirectoryTransport
) -> None:
    # The site's own default image is not checked against allowed_images; bwrap still
    # refuses one that would show the pilot's directory (a site mistake: infrastructure).
    config = dataclasses.replace(CONFIG, containers=replace_settings(default_image="/"))
    outcome = run_job(tmp_path, transport, config, executable="true")
    assert outcome.minor_status.startswith("Runtime Unavailable: image / holds the job's work dir")
    assert outcome.infrastructure_error


def replace_settings(**fields: object) -> ContainerSettings:
    return dataclasses.replace(BWRAP_ONLY, **fields)  # type: ignore[arg-type]


STARTER = """
import sys, time
from pathlib import Path
from wrapper.bubblewrap import BubblewrapRuntime
from wrapper.runtime import RunSpec
work = Path(sys.argv[2])
work.mkdir()
spec = RunSpec(argv=["sleep", sys.argv[3]], cwd=work, env={"PATH": "/bin"},
               stdout_path=work / "o", stderr_path=work / "e", image=sys.argv[1])
BubblewrapRuntime().start(spec)
print("started", flush=True)
time.sleep(60)
"""


def test_container_dies_with_a_wrapper_killed_outright(tmp_path: Path, rootfs: Path) -> None:
    marker = f"{os.getpid() % 1000 + 2000}.{uuid.uuid4().int % 10**6:06d}"
    wrapper = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(rootfs), str(tmp_path / "w"), marker],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert wrapper.stdout is not None and wrapper.stdout.readline() == "started\n"
        deadline = time.monotonic() + 5
        while not sleepers(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sleepers(marker)
        wrapper.kill()  # SIGKILL: the wrapper gets no chance to clean up
        wrapper.wait(timeout=5)
        deadline = time.monotonic() + 5
        while sleepers(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sleepers(marker) == []
    finally:
        wrapper.kill()
        wrapper.wait(timeout=5)
