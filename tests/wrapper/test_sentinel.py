"""Payloads die with their pilot (issue 12, item 7): a stand-in pilot process starts the
sentinel and a real plain payload whose tree spreads (a child, a double-forked daemon that
left the session), and is then SIGKILLed. The pilot agent's own test is in tests/chaos/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.conftest import REPO_ROOT
from wrapper.prctl import is_dumpable, set_dumpable
from wrapper.sentinel import Sentinel, kill_all

PILOT = """
import sys, time
from pathlib import Path
from wrapper.plain import PlainRuntime
from wrapper.runtime import RunSpec
from wrapper.sentinel import Sentinel
workdir = Path(sys.argv[1])
sentinel = Sentinel.start(workdir)
job = workdir / "job_3"
job.mkdir(parents=True)
script = (
    "sleep 300 & echo $! > child.pid; "
    "setsid sh -c 'echo $$ > daemon.pid; exec sleep 300' & "
    "echo $$ > root.pid; wait"
)
env = {"PATH": "/usr/bin:/bin", "GRIDPILOT_WORKDIR": str(job)}
spec = RunSpec(argv=["/bin/sh", "-c", script], cwd=job, env=env,
               stdout_path=job / "o", stderr_path=job / "e")
payload = PlainRuntime().start(spec)
sentinel.watch(payload.pid)
print(sentinel.pid, flush=True)
if sys.argv[2] == "exit":
    while not (job / "daemon.pid").exists():
        time.sleep(0.02)
    sentinel.close()
    print("closed", flush=True)
time.sleep(600)
"""


def payload_pids(job: Path, timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    names = ("root.pid", "child.pid", "daemon.pid")
    while time.monotonic() < deadline:
        if all((job / name).exists() and (job / name).read_text().strip() for name in names):
            return [int((job / name).read_text()) for name in names]
        time.sleep(0.02)
    raise AssertionError("the payload did not start its tree")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: list[int], timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def start_pilot(workdir: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PILOT, str(workdir), mode],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_payload_tree_dies_when_the_pilot_is_killed_outright(tmp_path: Path) -> None:
    pilot = start_pilot(tmp_path / "work", "stay")
    try:
        assert pilot.stdout is not None
        sentinel_pid = int(pilot.stdout.readline())
        pids = payload_pids(tmp_path / "work" / "job_3")
        assert all(alive(pid) for pid in pids)
        daemon = psutil.Process(pids[2])
        assert os.getsid(daemon.pid) != os.getsid(pids[0])  # it left the payload's session
        pilot.send_signal(signal.SIGKILL)  # no cleanup, no final word
        pilot.wait(timeout=10)
        assert wait_gone(pids) == []
        assert wait_gone([sentinel_pid]) == []  # and the sentinel ends with them
    finally:
        pilot.kill()
        pilot.wait(timeout=10)


def test_a_pilot_closing_its_sentinel_leaves_nothing_behind(tmp_path: Path) -> None:
    pilot = start_pilot(tmp_path / "work", "exit")
    try:
        assert pilot.stdout is not None
        sentinel_pid = int(pilot.stdout.readline())
        pids = payload_pids(tmp_path / "work" / "job_3")
        assert pilot.stdout.readline() == "closed\n"
        assert wait_gone(pids) == [] and not alive(sentinel_pid)
        assert pilot.poll() is None  # the pilot itself lives on
    finally:
        pilot.kill()
        pilot.wait(timeout=10)


def test_kill_all_finds_sessions_and_marked_processes_only(tmp_path: Path) -> None:
    marker = f"GRIDPILOT_WORKDIR={tmp_path}/job_".encode()
    session_leader = subprocess.Popen(["sleep", "300"], start_new_session=True)
    marked = subprocess.Popen(
        ["sleep", "300"], env={"GRIDPILOT_WORKDIR": f"{tmp_path}/job_9"}, start_new_session=True
    )
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        killed = kill_all({session_leader.pid}, marker)
        assert sorted(killed) == sorted([session_leader.pid, marked.pid])
        assert session_leader.wait(timeout=5) == -signal.SIGTERM
        assert marked.wait(timeout=5) == -signal.SIGTERM
        assert bystander.poll() is None
    finally:
        for process in (session_leader, marked, bystander):
            process.kill()
            process.wait(timeout=5)


def test_sentinel_starts_only_from_the_main_thread(tmp_path: Path) -> None:
    import threading

    errors: list[BaseException] = []

    def start() -> None:
        try:
            Sentinel.start(tmp_path)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    assert "main thread" in str(errors[0])


PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
from wrapper.prctl import set_dumpable
assert set_dumpable(sys.argv[2] == "dumpable")
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.read()
"""
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def environ_seen_by_the_same_user(dumpable: bool) -> str:
    """What a process of the probe's own user reads of the probe's /proc/<pid>/environ."""
    as_user = NOBODY if os.geteuid() == 0 else []  # root reads everything: test as nobody
    probe = subprocess.Popen(
        [*as_user, "/usr/bin/python3", "-I", "-c", PROBE, str(REPO_ROOT),
         "dumpable" if dumpable else "hidden"],
        env={"GRIDPILOT_TOKEN": "pilot-token-in-env", "PATH": "/usr/bin:/bin"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert probe.stdout is not None and probe.stdout.readline() == "ready\n"
        # "ready" comes from python itself: setpriv has exec'd it in the same process.
        done = subprocess.run(
            [*as_user, "cat", f"/proc/{probe.pid}/environ"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return done.stdout + done.stderr
    finally:
        assert probe.stdin is not None
        probe.stdin.close()
        probe.wait(timeout=10)


def test_a_non_dumpable_process_hides_its_environment_from_its_own_user() -> None:
    """What PR_SET_DUMPABLE=0 buys the pilot: a payload of the pilot's own user cannot read
    its environment (nor its memory, nor ptrace it); without it, it can."""
    assert "pilot-token-in-env" in environ_seen_by_the_same_user(dumpable=True)
    hidden = environ_seen_by_the_same_user(dumpable=False)
    assert "pilot-token-in-env" not in hidden and "Permission denied" in hidden


def test_dumpable_can_be_set_and_read_back() -> None:
    assert set_dumpable(False) and is_dumpable() is False
    assert set_dumpable(True) and is_dumpable() is True
