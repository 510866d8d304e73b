"""Live log shipping (``wrapper.logstream`` through ``pilot.joblogs``) against a real
coordinator, tailing files a real subprocess is appending to."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from pilot.client import CoordinatorClient
from pilot.joblogs import JobLogSender
from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot, User
from wrapper.logstream import LogShipper, stream_files

WRITER = """
import sys, time
for i in range(int(sys.argv[1])):
    print(f"line {i:05d} " + "x" * (i % 50), flush=True)
    if i % 7 == 0:
        print(f"err {i}", file=sys.stderr, flush=True)
    time.sleep(float(sys.argv[2]))
"""


def running_job(coord: RunningCoordinator, vo: str) -> tuple[User, FakePilot, int]:
    user, pilot = User(coord, vo), FakePilot(coord, vo)
    (job_id,) = user.submit()
    assert pilot.match() == [job_id]
    assert pilot.report(job_id, "Running").status_code == 200
    return user, pilot, job_id


def stored(user: User, job_id: int, stream: str) -> bytes:
    reply = user.get(f"/jobs/{job_id}/logs/{stream}", limit=16 * 1024 * 1024)
    assert reply.status_code == 200, reply.text
    return reply.content


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class SwitchableSender:
    """The real sender, pointed at a dead address or the live coordinator."""

    def __init__(self, live: JobLogSender, dead: JobLogSender) -> None:
        self.live, self.dead, self.up = live, dead, True
        self.failed_calls = 0

    def __call__(self, stream: str, offset: int, data: bytes) -> int:
        if self.up:
            return self.live(stream, offset, data)
        self.failed_calls += 1
        return self.dead(stream, offset, data)


def start_writer(workdir: Path, lines: int, pause_s: float) -> subprocess.Popen[bytes]:
    with open(workdir / "std.out", "ab") as out, open(workdir / "std.err", "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-c", WRITER, str(lines), str(pause_s)], stdout=out, stderr=err
        )


def test_every_byte_arrives_once_in_order_across_an_outage(
    shared_coordinator: RunningCoordinator, vo: str, tmp_path: Path
) -> None:
    user, pilot, job_id = running_job(shared_coordinator, vo)
    token = pilot.token
    live = JobLogSender(CoordinatorClient(shared_coordinator.url, token), pilot.pilot_id, job_id)
    dead = JobLogSender(CoordinatorClient(closed_port_url(), token), pilot.pilot_id, job_id)
    sender = SwitchableSender(live, dead)
    files = stream_files(tmp_path, "std.out", "std.err")
    shipper = LogShipper(files, sender, interval_s=0.1, max_chunk_bytes=1000)
    writer = start_writer(tmp_path, lines=300, pause_s=0.006)
    shipper.start()
    time.sleep(0.5)
    assert len(stored(user, job_id, "stdout")) > 0, "nothing shipped while the writer runs"
    sender.up = False
    time.sleep(0.6)
    during_outage = len(stored(user, job_id, "stdout"))
    assert writer.wait(timeout=30) == 0
    assert (tmp_path / "std.out").stat().st_size > during_outage  # a backlog built up
    sender.up = True
    final = shipper.close()
    assert sender.failed_calls > 0
    for stream, name in (("stdout", "std.out"), ("stderr", "std.err")):
        assert stored(user, job_id, stream) == (tmp_path / name).read_bytes()
        assert final[stream] == (tmp_path / name).stat().st_size


def test_a_capped_job_log_stops_shipping_and_keeps_the_file(
    start_coordinator: object, vo: str, tmp_path: Path
) -> None:
    coord = start_coordinator(max_log_bytes=4096)  # type: ignore[operator]
    user, pilot, job_id = running_job(coord, vo)
    sender = JobLogSender(CoordinatorClient(coord.url, pilot.token), pilot.pilot_id, job_id)
    (tmp_path / "std.out").write_bytes(b"y" * 10_000)
    shipper = LogShipper(stream_files(tmp_path, "std.out", "std.out"), sender, max_chunk_bytes=1024)
    shipper.start()
    started = time.monotonic()
    offsets = shipper.close()
    assert time.monotonic() - started < 5  # refused for good: no retrying until the deadline
    assert list(offsets) == ["stdout"]  # one file named twice is shipped once
    assert stored(user, job_id, "stdout") == b"y" * 4096
    assert (tmp_path / "std.out").stat().st_size == 10_000


def test_a_shipper_resumes_where_the_coordinator_says(
    shared_coordinator: RunningCoordinator, vo: str, tmp_path: Path
) -> None:
    """A restarted shipper (offset 0) skips what the coordinator holds, sends the rest."""
    user, pilot, job_id = running_job(shared_coordinator, vo)
    (tmp_path / "out").write_bytes(b"first part\nsecond part\n")
    assert pilot.append_log(job_id, b"first part\n", 0).status_code == 200
    client = CoordinatorClient(shared_coordinator.url, pilot.token)
    shipper = LogShipper(
        stream_files(tmp_path, "out", "../escape"), JobLogSender(client, pilot.pilot_id, job_id)
    )
    shipper.start()
    assert shipper.close() == {"stdout": 23}  # the name leaving the work dir is not read
    assert stored(user, job_id, "stdout") == b"first part\nsecond part\n"


class CountingSender:
    """The real sender, counting the requests it makes."""

    def __init__(self, live: JobLogSender) -> None:
        self.live, self.calls = live, 0

    def __call__(self, stream: str, offset: int, data: bytes) -> int:
        self.calls += 1
        return self.live(stream, offset, data)


def test_output_after_a_quiet_spell_is_shipped_at_once_and_chatter_once_per_interval(
    shared_coordinator: RunningCoordinator, vo: str, tmp_path: Path
) -> None:
    user, pilot, job_id = running_job(shared_coordinator, vo)
    client = CoordinatorClient(shared_coordinator.url, pilot.token)
    sender = CountingSender(JobLogSender(client, pilot.pilot_id, job_id))
    out = tmp_path / "std.out"
    out.write_bytes(b"")
    shipper = LogShipper(stream_files(tmp_path, "std.out", "std.out"), sender, interval_s=1.0)
    shipper.start()
    latencies_s = []
    for number in range(3):
        time.sleep(1.3)  # quiet for longer than the interval
        line = f"progress {number}\n".encode()
        with open(out, "ab") as handle:
            handle.write(line)
        written_s = time.monotonic()
        while not stored(user, job_id, "stdout").endswith(line):
            assert time.monotonic() - written_s < 5, "line never shipped"
            time.sleep(0.02)
        latencies_s.append(time.monotonic() - written_s)
    # Shipping every interval alone would show each line 0.5 s late on average.
    assert max(latencies_s) < 0.4, latencies_s
    calls_before = sender.calls
    writer = start_writer(tmp_path, lines=400, pause_s=0.005)  # about 2.5 s of chatter
    assert writer.wait(timeout=30) == 0
    chatter_calls = sender.calls - calls_before
    shipper.close()
    assert stored(user, job_id, "stdout") == out.read_bytes()
    # Continuous output: one request per interval (plus the last flush), not per line.
    assert chatter_calls <= 4, chatter_calls
