"""Output sandboxes: incompressible files stored, compressible ones deflated, one valid
.tar.gz either way; and a large sandbox through a real coordinator with bounded memory."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import RunningCoordinator
from wrapper.gzipstream import DEFAULT_LEVEL, STORE_LEVEL, GzipStream, level_for
from wrapper.sandbox import pack, unpack

MIB = 1024**2
REPO = Path(__file__).resolve().parents[2]


class Collect:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


@given(st.lists(st.tuples(st.binary(max_size=5000), st.sampled_from([0, 1, 6, 9])), max_size=8))
@settings(max_examples=60)
def test_changing_levels_midstream_still_gives_one_valid_gzip(
    pieces: list[tuple[bytes, int]],
) -> None:
    sink = Collect()
    stream = GzipStream(sink)
    for data, level in pieces:
        stream.set_level(level)
        stream.write(data)
    stream.close()
    assert gzip.decompress(bytes(sink.data)) == b"".join(data for data, _ in pieces)


def test_random_files_are_stored_and_text_is_deflated(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    noise = os.urandom(2 * MIB)
    text = b"event 1234 energy 56.7 GeV\n" * 80_000  # about 2 MB
    (work / "noise.root").write_bytes(noise)
    (work / "run.log").write_bytes(text)
    with open(work / "noise.root", "rb") as handle:
        assert level_for(handle, len(noise)) == STORE_LEVEL
        assert handle.tell() == 0
    with open(work / "run.log", "rb") as handle:
        assert level_for(handle, len(text)) == DEFAULT_LEVEL
    only_noise = pack(work, ["noise.root"], tmp_path / "noise.tar.gz")
    only_text = pack(work, ["run.log"], tmp_path / "text.tar.gz")
    # Stored: the archive is the file plus tar and deflate framing, not bigger, not smaller.
    assert len(noise) < only_noise.size_bytes < len(noise) * 1.01
    assert only_text.size_bytes < len(text) / 100
    both = pack(work, ["*"], tmp_path / "both.tar.gz")
    again = pack(work, ["*"], tmp_path / "again.tar.gz")
    assert both.sha256 == again.sha256  # same files, same archive, same digest
    unpack(both.path, tmp_path / "ours")
    assert (tmp_path / "ours" / "noise.root").read_bytes() == noise
    # Any tar reads it: the system's and Python's own gzip mode.
    (tmp_path / "tar").mkdir()
    subprocess.run(["tar", "-xzf", str(both.path), "-C", str(tmp_path / "tar")], check=True)
    assert (tmp_path / "tar" / "run.log").read_bytes() == text
    with tarfile.open(both.path, "r:gz") as tar:
        assert sorted(tar.getnames()) == ["noise.root", "run.log"]


@pytest.mark.slow
def test_large_output_sandbox_round_trip_keeps_memory_bounded(
    tmp_path: Path, coordinator: RunningCoordinator
) -> None:
    size_mb = 512
    command = [
        sys.executable,
        "-m",
        "bench.large_sandbox",
        "--size-mb",
        str(size_mb),
        "--url",
        coordinator.url,
        "--token",
        coordinator.token("pilot", subject="pilot-1"),
        "--coordinator-pid",
        str(coordinator.process.pid),
        "--dir",
        str(tmp_path),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=True, cwd=REPO
    )
    result = json.loads(done.stdout)
    wrapper, download, server = result["wrapper"], result["download"], result["coordinator"]
    assert (wrapper["status"], wrapper["minor_status"]) == ("Done", "Execution Complete")
    assert download["unpacked_bytes"] == size_mb * MIB
    assert download["archive_bytes"] < size_mb * MIB * 1.01  # stored, not re-deflated
    # Memory does not grow with the sandbox: 512 MB went through each of them.
    assert wrapper["peak_rss_bytes"] < 150 * MIB
    assert download["peak_rss_bytes"] < 150 * MIB
    assert server["peak_rss_bytes"] < 150 * MIB
    assert server["peak_rss_bytes"] - server["baseline_rss_bytes"] < 50 * MIB
