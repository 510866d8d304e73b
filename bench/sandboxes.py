"""Sandboxes: our upload and download against ``cp`` and plain HTTP with curl, and memory.

    .venv/bin/python -m bench.sandboxes --size-mb 512 2048

For each size, a real coordinator on 127.0.0.1 (started here) and:

1. the wrapper's stage-out of one job whose output sandbox is that much incompressible
   data (``bench/large_sandbox.py``'s wrapper role: pack + upload), then a downloader that
   fetches (sha256 verified) and unpacks it: time and each process's peak RSS;
2. the archive the wrapper uploaded, moved ``--repeat`` times (interleaved, fresh
   destination each time) six ways: ``cp`` to the same disk; ``curl -T`` (PUT) to the
   plain-HTTP floor and to a bare ASGI app under uvicorn (``bench/http_floor.py``);
   ``curl -o`` back from the plain-HTTP floor; our client's upload
   (``CoordinatorClient.upload_sandbox``; the coordinator's copy is removed first, so that
   it stores the bytes again rather than only check an identical re-upload) and download
   (``download_sandbox``, sha256 verified), each in a process of its own.

The plain-HTTP floor is stdlib ``http.server`` in its own process, streaming PUT bodies to
a file and files back on GET with 1 MiB buffers, no hashing, no fsync. Our coordinator
hashes every byte and fsyncs the upload before it answers. Each way's CPU time (client and
server) is measured beside its wall time: on a shared machine it is the steadier figure.
The coordinator's resident memory is sampled every 50 ms throughout. Prints a table and
writes ``bench/results/sandboxes.json``; ``--smoke`` is one round at 16 MB.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import psutil

from bench import http_floor
from bench.harness import REPO, arguments, module_command, start_coordinator, write_result
from bench.large_sandbox import RssSampler, peak_rss_bytes, role
from pilot.client import CoordinatorClient

MIB = 1024**2
GOAL_OF_CURL = 0.5
GOAL_RSS_BYTES = 150 * MIB
Timing = tuple[float, float]
"""Wall seconds, CPU seconds (client and server together)."""


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_command(command: list[str], server: Optional[psutil.Process] = None) -> Timing:
    """Wall seconds, and CPU seconds of the command plus what it cost ``server``."""
    cpu_before_s = children_cpu_s() + (cpu_s(server) if server else 0.0)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall_s = time.perf_counter() - started
    return wall_s, children_cpu_s() + (cpu_s(server) if server else 0.0) - cpu_before_s


def our_transfer(kind: str, url: str, token: str, path: Path, sha256: str) -> dict[str, Any]:
    """Role: one upload or download through the pilot's client, timed inside the process."""
    client = CoordinatorClient(url, token)
    started, cpu_started_s = time.perf_counter(), time.process_time()
    if kind == "upload":
        client.upload_sandbox(path, sha256)
    else:
        client.download_sandbox(sha256, path)
    return {
        "seconds": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu_started_s,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def transfer(kind: str, url: str, token: str, path: Path, sha256: str) -> dict[str, Any]:
    """Run ``our_transfer`` in a process of its own, so its peak memory is its own."""
    command = module_command("sandboxes", "--role", kind, "--url", url, "--token", token)
    command += ["--path", str(path), "--sha256", sha256]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"our {kind} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@dataclasses.dataclass(frozen=True)
class Servers:
    url: str
    token: str
    coordinator: psutil.Process
    stdlib_url: str
    """The plain HTTP floor (``bench/http_floor.py``)."""
    stdlib: psutil.Process
    asgi_url: str
    """A bare ASGI app under uvicorn: our server's own floor."""
    asgi: psutil.Process


def ours(kind: str, servers: Servers, path: Path, sha256: str) -> Timing:
    """Our upload or download: wall seconds, CPU seconds of client and coordinator."""
    before_s = cpu_s(servers.coordinator)
    done = transfer(kind, servers.url, servers.token, path, sha256)
    return done["seconds"], done["cpu_s"] + cpu_s(servers.coordinator) - before_s


def one_round(archive: Path, base: Path, servers: Servers, sha256: str) -> dict[str, Timing]:
    """Each way once, on a fresh destination."""
    local, fetched = base / "client.tar.gz", base / "fetched.tar.gz"
    timings = {"cp": timed_command(["cp", str(archive), str(local)])}
    for name, url, server in (
        ("curl upload", servers.stdlib_url, servers.stdlib),
        ("curl upload (uvicorn)", servers.asgi_url, servers.asgi),
    ):
        put = ["curl", "-sSf", "-T", str(local), f"{url}/floor.tar.gz"]
        timings[name] = timed_command(put, server)
    # The coordinator's copy goes first, so that our upload stores the bytes (written and
    # fsynced) as curl's do, not the identical re-upload's check of them (hashed only).
    archive.unlink()
    timings["our upload"] = ours("upload", servers, local, sha256)
    get = ["curl", "-sSf", "-o", str(fetched), f"{servers.stdlib_url}/floor.tar.gz"]
    for name, fetch in (
        ("curl download", lambda: timed_command(get, servers.stdlib)),
        ("our download", lambda: ours("download", servers, fetched, sha256)),
    ):
        timings[name] = fetch()
        if fetched.stat().st_size != local.stat().st_size:
            raise SystemExit(f"{name} is short")
        fetched.unlink()
    for leftover in [local, *(base / "floor").iterdir(), *(base / "asgi").iterdir()]:
        leftover.unlink()
    return timings


def stage_out(base: Path, coordinator: tuple[str, str], size_mb: int) -> dict[str, Any]:
    """The whole wrapper (pack + upload) and the downloader (fetch + unpack), once each."""
    url, token = coordinator
    job_dir = base / "job"
    job_dir.mkdir()
    common = ["--url", url, "--token", token, "--dir", str(job_dir)]
    wrapper = role("wrapper", *common, "--size-mb", str(size_mb))
    if wrapper["status"] != "Done":
        raise SystemExit(f"the job ended {wrapper['status']}: {wrapper['minor_status']}")
    download = role("download", *common, "--sha256", wrapper["sha256"])
    if download["unpacked_bytes"] != max(1, size_mb // 16) * 16 * MIB:
        raise SystemExit(f"unpacked {download['unpacked_bytes']} bytes, not {size_mb} MiB")
    shutil.rmtree(job_dir)
    return {"wrapper": wrapper, "download": download}


def measure_size(base: Path, size_mb: int, rounds: int) -> dict[str, Any]:
    for name in ("coordinator", "floor", "asgi"):
        (base / name).mkdir()
    server, url, token = start_coordinator(base / "coordinator")
    floor, stdlib_url = http_floor.start("stdlib", base / "floor")
    asgi, asgi_url = http_floor.start("asgi", base / "asgi")
    servers = Servers(
        url, token, psutil.Process(server.pid),
        stdlib_url, psutil.Process(floor.pid), asgi_url, psutil.Process(asgi.pid),
    )  # fmt: skip
    sampler = RssSampler(server.pid)
    sampler.start()
    try:
        whole = stage_out(base, (url, token), size_mb)
        sha256 = whole["wrapper"]["sha256"]
        archive = base / "coordinator" / "sandboxes" / sha256[:2] / sha256
        times = [one_round(archive, base, servers, sha256) for _ in range(rounds)]
    finally:
        sampler.stop()
        for process in (asgi, floor, server):
            process.terminate()
            process.wait(timeout=30)
    return summarise(size_mb, archive_bytes(whole), times, whole, sampler)


def archive_bytes(whole: dict[str, Any]) -> int:
    size: int = whole["download"]["archive_bytes"]
    return size


WAYS = ["cp", "curl upload", "curl upload (uvicorn)", "our upload", "curl download", "our download"]


def summarise(
    size_mb: int,
    size_bytes: int,
    rounds: list[dict[str, Timing]],
    whole: dict[str, Any],
    sampler: RssSampler,
) -> dict[str, Any]:
    wall_s = {way: statistics.median(r[way][0] for r in rounds) for way in WAYS}
    cpu = {way: statistics.median(r[way][1] for r in rounds) for way in WAYS}
    mb_per_s = {way: round(size_bytes / MIB / wall_s[way], 1) for way in WAYS}
    gb = size_bytes / 1024**3

    def ratio(ours: str, theirs: str) -> float:
        return round(mb_per_s[ours] / mb_per_s[theirs], 2)

    def cpu_ratio(ours: str, theirs: str) -> float:
        """How many of ours the CPU time of one of theirs pays for (1 = as cheap)."""
        return round(cpu[theirs] / cpu[ours], 2)

    return {
        "size_mb": size_mb,
        "archive_bytes": size_bytes,
        "rounds": [{way: [round(v, 3) for v in r[way]] for way in WAYS} for r in rounds],
        "median_mb_per_s": mb_per_s,
        "cpu_s_per_gb": {way: round(cpu[way] / gb, 2) for way in WAYS},
        "upload_vs_curl": ratio("our upload", "curl upload"),
        "upload_vs_uvicorn_floor": ratio("our upload", "curl upload (uvicorn)"),
        "download_vs_curl": ratio("our download", "curl download"),
        "upload_vs_cp": ratio("our upload", "cp"),
        "download_vs_cp": ratio("our download", "cp"),
        "upload_cpu_vs_curl": cpu_ratio("our upload", "curl upload"),
        "download_cpu_vs_curl": cpu_ratio("our download", "curl download"),
        "stage_out_s": round(whole["wrapper"]["pack_and_upload_s"], 2),
        "download_and_unpack_s": round(
            whole["download"]["download_s"] + whole["download"]["unpack_s"], 2
        ),
        "wrapper_peak_rss_bytes": whole["wrapper"]["peak_rss_bytes"],
        "downloader_peak_rss_bytes": whole["download"]["peak_rss_bytes"],
        "coordinator_baseline_rss_bytes": sampler.baseline_bytes,
        "coordinator_peak_rss_bytes": sampler.peak_bytes,
    }


def print_table(results: list[dict[str, Any]]) -> None:
    short = {"curl upload (uvicorn)": "curl up (uvicorn)"}
    heads = " ".join(f"{short.get(way, way):>17}" for way in WAYS)
    print(f"MB/s (median) / CPU s per GB, client and server together:\n{'size':>8} {heads}")
    for r in results:
        cells = (f"{r['median_mb_per_s'][w]:.0f} / {r['cpu_s_per_gb'][w]:.2f}" for w in WAYS)
        print(f"{r['size_mb']:>5} MB " + " ".join(f"{cell:>17}" for cell in cells))
    print(f"\nratios, ours to theirs (goal: >= {GOAL_OF_CURL} of curl; cpu: theirs / ours):")
    names = ["upload_vs_curl", "upload_vs_uvicorn_floor", "download_vs_curl", "upload_vs_cp",
             "download_vs_cp", "upload_cpu_vs_curl", "download_cpu_vs_curl"]  # fmt: skip
    print(f"{'size':>8} " + " ".join(f"{name:>23}" for name in names))
    for r in results:
        print(f"{r['size_mb']:>5} MB " + " ".join(f"{r[name]:>23}" for name in names))
    print(f"\npeak RSS MiB (goal < {GOAL_RSS_BYTES // MIB}); stage-out = pack + upload:")
    print(f"{'size':>8} {'stage-out s':>11} {'wrapper':>8} {'downloader':>10} {'coordinator':>12}")
    for r in results:
        print(
            f"{r['size_mb']:>5} MB {r['stage_out_s']:>11} "
            f"{r['wrapper_peak_rss_bytes'] // MIB:>8} {r['downloader_peak_rss_bytes'] // MIB:>10} "
            f"{r['coordinator_peak_rss_bytes'] // MIB:>12}"
        )


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "date": datetime.date.today().isoformat(),
    }


def run_role(args: argparse.Namespace) -> None:
    result = our_transfer(args.role, args.url, args.token, args.path, args.sha256)
    print(json.dumps(result))


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], "one round at 16 MB, for CI", "sandboxes")
    parser.add_argument("--size-mb", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--repeat", type=int, default=3, help="rounds per size (default 3)")
    parser.add_argument("--dir", type=Path, help="where to work (default: a temporary dir)")
    parser.add_argument("--role", choices=["upload", "download"], help=argparse.SUPPRESS)
    for hidden in ("--url", "--token", "--sha256"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        run_role(args)
        return
    if shutil.which("curl") is None:
        raise SystemExit("curl is not installed: run tests/setup-system.sh")
    sizes, rounds = ([16], 1) if args.smoke else (args.size_mb, args.repeat)
    results = []
    for size_mb in sizes:
        with tempfile.TemporaryDirectory(prefix="gridpilot-sandboxes-", dir=args.dir) as tmp:
            results.append(measure_size(Path(tmp), size_mb, rounds))
    print_table(results)
    document = {"machine": machine(), "goal_of_curl": GOAL_OF_CURL, "sizes": results}
    write_result(args.output, document)


if __name__ == "__main__":
    main()
