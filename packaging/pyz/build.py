"""Build ``gridpilot-pilot.pyz``: the worker side and its run-time dependencies in one file.

Run through ``packaging/build-pyz.sh``. The wheels pinned in ``requirements.txt`` come from
``pip download --only-binary=:all:`` for Python 3.9, the pyz's floor: pure-Python ones as
they are, psutil's abi3 manylinux wheel once per architecture (under ``arch/<machine>/``,
the bootstrap picks one), and PyYAML without its compiled ``_yaml`` (yaml then uses its
pure-Python loader). Every wheel must match its sha256 in ``wheels.sha256`` (a changed or
swapped upload on the index fails the build); ``--update-hashes`` rewrites that file after a
deliberate change of ``requirements.txt``. The archive is reproducible: members sorted, fixed
timestamps.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
WORKER_PACKAGES = ("protocol", "pilot", "wrapper", "checks")
ARCHES = ("x86_64", "aarch64")
NATIVE_PER_ARCH = {"psutil"}
PURE_FROM_NATIVE = {"pyyaml"}
"""Wheels only published compiled: their pure-Python part is kept, their .so dropped."""

PYTHON_FLOOR = "3.9"
ZIP_DATE = (2020, 1, 1, 0, 0, 0)
SHEBANG = b"#!/usr/bin/env python3\n"
_NEVER = re.compile(r"(^|/)(__pycache__|tests?)/|\.pyc$")
"""Bytecode and test suites: never carried."""
_NATIVE = re.compile(r"\.so$|^_yaml/")
"""Compiled modules, and PyYAML's ``_yaml`` shim that only re-exports its compiled one."""


def read_pins(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _name(pin: str) -> str:
    return re.split(r"[=<>!~ ]", pin, maxsplit=1)[0].lower().replace("_", "-")


def pip_download(pins: list[str], dest: Path, *, platform: str, abi: str) -> list[Path]:
    """Download exactly ``pins`` (no dependency resolution) as wheels for ``platform``."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", "--python-version", PYTHON_FLOOR]
    command += ["--implementation", "cp", "--abi", abi, "--platform", platform, "-d", str(dest)]
    subprocess.run([*command, *pins], check=True)
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != len(pins):
        raise SystemExit(f"expected {len(pins)} wheels in {dest}, got {[w.name for w in wheels]}")
    return wheels


def wheel_members(wheel: Path, *, keep_native: bool) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.endswith("/") or _NEVER.search(name):
                continue
            if not keep_native and _NATIVE.search(name):
                continue
            yield name, archive.read(name)


def worker_members() -> Iterator[tuple[str, bytes]]:
    for package in WORKER_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield path.relative_to(REPO_ROOT).as_posix(), path.read_bytes()


def download(download_dir: Path, pins: list[str]) -> dict[str, list[Path]]:
    """The wheels for each part of the archive: ``lib`` (pure), ``strip``, ``arch/<machine>``."""
    native = [p for p in pins if _name(p) in NATIVE_PER_ARCH]
    stripped = [p for p in pins if _name(p) in PURE_FROM_NATIVE]
    pure = [p for p in pins if p not in native and p not in stripped]
    wheels = {
        "lib": pip_download(pure, download_dir / "pure", platform="any", abi="none"),
        "strip": pip_download(
            stripped, download_dir / "stripped", platform="manylinux2014_x86_64", abi="cp39"
        ),
    }
    for arch in ARCHES:
        wheels[f"arch/{arch}"] = pip_download(
            native, download_dir / arch, platform=f"manylinux2014_{arch}", abi="abi3"
        )
    return wheels


def verify(wheels: list[Path], hashes: Path, *, update: bool) -> None:
    """Check every downloaded wheel against ``hashes`` (sha256sum format), or rewrite it."""
    found = {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels}
    if update:
        hashes.write_text("".join(f"{found[name]}  {name}\n" for name in sorted(found)))
        return
    expected: dict[str, str] = {}
    for line in hashes.read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            expected[name] = digest
    wrong = sorted(name for name in found if expected.get(name) != found[name])
    if wrong:
        raise SystemExit(
            f"wheels not matching {hashes}: {', '.join(wrong)} (after changing "
            "requirements.txt on purpose, rebuild with --update-hashes and review the diff)"
        )


def collect(wheels: dict[str, list[Path]]) -> dict[str, bytes]:
    """Every archive member except ``__main__.py``: ``lib/...`` and ``arch/<machine>/...``."""
    members: dict[str, bytes] = {}
    for part, part_wheels in wheels.items():
        prefix = "lib" if part == "strip" else part
        for wheel in part_wheels:
            native = part.startswith("arch/")
            members.update(
                (f"{prefix}/{n}", d) for n, d in wheel_members(wheel, keep_native=native)
            )
    members.update((f"lib/{n}", d) for n, d in worker_members())
    return members


def build_id(members: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(members):
        digest.update(name.encode() + b"\0" + hashlib.sha256(members[name]).digest())
    return digest.hexdigest()[:16]


def write_pyz(output: Path, members: dict[str, bytes]) -> str:
    """Write the archive atomically; return its build id."""
    ident = build_id(members)
    bootstrap = (HERE / "bootstrap.py").read_text().replace("@BUILD_ID@", ident)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(output.name + ".tmp")
    with open(temporary, "wb") as stream:
        stream.write(SHEBANG)
        with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for name, data in [("__main__.py", bootstrap.encode()), *sorted(members.items())]:
                info = zipfile.ZipInfo(name, ZIP_DATE)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
    temporary.chmod(0o755)
    os.replace(temporary, output)
    return ident


def write_checksum(output: Path) -> str:
    digest = hashlib.sha256(output.read_bytes()).hexdigest()
    # sha256sum's format, so `sha256sum -c` checks it from the pyz's directory.
    output.with_name(output.name + ".sha256").write_text(f"{digest}  {output.name}\n")
    return digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "output", nargs="?", type=Path, default=REPO_ROOT / "packaging/dist/gridpilot-pilot.pyz"
    )
    parser.add_argument("--requirements", type=Path, default=HERE / "requirements.txt")
    parser.add_argument("--hashes", type=Path, default=HERE / "wheels.sha256")
    parser.add_argument(
        "--update-hashes", action="store_true", help="record the downloaded wheels' sha256"
    )
    args = parser.parse_args()
    pins = read_pins(args.requirements)
    with tempfile.TemporaryDirectory(prefix="gridpilot-pyz-") as scratch:
        wheels = download(Path(scratch), pins)
        verify(
            [w for part in wheels.values() for w in part], args.hashes, update=args.update_hashes
        )
        members = collect(wheels)
    ident = write_pyz(args.output, members)
    digest = write_checksum(args.output)
    size_kib = args.output.stat().st_size / 1024
    sys.stdout.write(f"{args.output}: {size_kib:.0f} KiB, build {ident}, sha256 {digest}\n")


if __name__ == "__main__":
    main()
