"""A job's environment reaches its payload only, never a process on the node (issue 12, item 3).

The attack, for real: the job ships a shared library in its input sandbox and names it in
``LD_PRELOAD`` (its path on the node learnt from ``/proc/self/mountinfo`` in an earlier job,
spelt with a leading ``//`` so no rewriting of work-dir paths touches it). If bwrap itself,
on the node, ran with the job's environment, the library's constructor would run outside
the container as the pilot's user and copy the pilot's token into the work dir. The library
is built by the test with the node's C compiler (``tests/setup-system.sh`` installs gcc).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from protocol import JobStatus
from tests.wrapper.conftest import IMAGE_LOCATIONS, DirectoryTransport, assignment
from tests.wrapper.rootfs import build_rootfs
from wrapper.job import ContainerSettings, JobOutcome, JobRun, WrapperConfig
from wrapper.sandbox import pack

STEALER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void steal(void) {
    const char *from = getenv("STEAL_FROM"), *to = getenv("STEAL_TO");
    if (!from || !to) return;
    FILE *in = fopen(from, "r");
    if (!in) return;
    FILE *out = fopen(to, "w");
    if (!out) { fclose(in); return; }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    fprintf(out, "\nstolen by pid %d\n", (int)getpid());
    fclose(in);
    fclose(out);
}
"""
CONFIG = WrapperConfig(
    allow_plain=False,
    containers=ContainerSettings(runtimes=("bwrap",), allowed_images=IMAGE_LOCATIONS),
    kill_grace_s=0.5,
)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rootfs(tmp_path_factory.mktemp("image") / "rootfs")


@pytest.fixture(scope="module")
def stealer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The attacker's shared library, built on the attacker's side of the test."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        if os.environ.get("CI"):
            pytest.fail("a C compiler is required in CI (tests/setup-system.sh installs gcc)")
        pytest.skip("no C compiler to build the attacker's library")
    build = tmp_path_factory.mktemp("attacker")
    (build / "stealer.c").write_text(STEALER_C)
    library = build / "stealer.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", str(library), str(build / "stealer.c")],
        check=True,
        timeout=60,
    )
    return library


def run_script(
    tmp_path: Path,
    transport: DirectoryTransport,
    rootfs: Path,
    files: Path,
    script: str,
    environment: list[str],
) -> JobOutcome:
    """``sh -c script`` in the image, with ``files`` as its input sandbox."""
    sandbox = transport.put(pack(files, ["."], tmp_path / "in.tar.gz").path)
    job = assignment(
        container=str(rootfs),
        input_sandboxes=[sandbox],
        executable="sh",
        arguments=["-c", script],
        description={"ExecutionEnvironment": environment},
    )
    return JobRun(job, tmp_path / "pilot" / "job_7", transport, CONFIG).run()


def test_ld_preload_from_the_jobs_sandbox_never_runs_on_the_node(
    tmp_path: Path, transport: DirectoryTransport, rootfs: Path, stealer: Path
) -> None:
    token = "pilot-token-" + uuid.uuid4().hex
    token_file = tmp_path / "secrets" / "pilot.token"
    token_file.parent.mkdir()
    token_file.write_text(token)
    staging = tmp_path / "staging"
    staging.mkdir()
    shutil.copy(stealer, staging / "libhelper.so")
    host_dir = f"/{tmp_path}/pilot/job_7"  # "//tmp/...": the job dir's node path, unrewritten
    environment = [
        f"LD_PRELOAD={host_dir}/libhelper.so",
        f"STEAL_FROM={token_file}",
        f"STEAL_TO={host_dir}/stolen",
    ]
    script = 'echo "inside: $LD_PRELOAD"'
    outcome = run_script(tmp_path, transport, rootfs, staging, script, environment)
    work = tmp_path / "pilot" / "job_7"
    assert outcome.status == JobStatus.DONE, outcome.minor_status
    assert not (work / "stolen").exists(), "the job's library ran on the node"
    # The variable is the payload's, inside the container, as the job asked.
    assert (work / "std.out").read_text() == f"inside: {host_dir}/libhelper.so\n"
    assert token not in (work / "std.err").read_text()


def test_container_init_command_line_does_not_show_node_paths(
    tmp_path: Path, transport: DirectoryTransport, rootfs: Path
) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "data.txt").write_text("x\n")
    secret = "value-" + uuid.uuid4().hex
    script = "cat /proc/1/cmdline; echo; cat /proc/1/environ"
    outcome = run_script(tmp_path, transport, rootfs, staging, script, [f"MY_SECRET={secret}"])
    assert outcome.status == JobStatus.DONE, outcome.minor_status
    seen = (tmp_path / "pilot" / "job_7" / "std.out").read_bytes().replace(b"\0", b" ").decode()
    assert seen.startswith("bwrap --args ")
    assert str(tmp_path) not in seen and str(rootfs) not in seen
    assert secret not in seen  # the job's variables are not on bwrap's command line either
