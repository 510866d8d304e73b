"""A small root filesystem for container tests: static busybox and its applets.

Debian's ``busybox-static`` (installed by tests/setup-system.sh) is one self-contained
binary, so copying it and linking applet names to it makes a working directory image.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

APPLETS = (
    "sh",
    "cat",
    "echo",
    "env",
    "false",
    "grep",
    "id",
    "kill",
    "ls",
    "mkdir",
    "ps",
    "pwd",
    "setsid",
    "sleep",
    "test",
    "touch",
    "true",
    "wc",
)
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
PT_INTERP = 3


def find_static_busybox() -> str:
    """The node's busybox, if it is a static binary (a dynamic one cannot run alone)."""
    for candidate in BUSYBOX_CANDIDATES:
        if os.access(candidate, os.X_OK) and not _dynamic(candidate):
            return candidate
    raise RuntimeError("a static busybox is needed: run tests/setup-system.sh (busybox-static)")


def _dynamic(path: str) -> bool:
    """Whether a 64-bit little-endian ELF file asks for an interpreter (PT_INTERP)."""
    with open(path, "rb") as handle:
        header = handle.read(65536)
    if header[:6] != b"\x7fELF\x02\x01":
        return True
    phoff = struct.unpack_from("<Q", header, 0x20)[0]
    entry_size, count = struct.unpack_from("<HH", header, 0x36)
    types = [struct.unpack_from("<I", header, phoff + i * entry_size)[0] for i in range(count)]
    return PT_INTERP in types


def build_rootfs(dest: Path) -> Path:
    """``dest`` as a directory image: /bin/busybox, applet links, /usr/bin, /etc, /srv."""
    busybox = find_static_busybox()
    for name in ("bin", "usr/bin", "etc", "srv", "data"):
        (dest / name).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    for applet in APPLETS:
        (dest / "bin" / applet).symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "not-a-program").write_text("plain data\n")
    (dest / "lib").symlink_to("usr/lib")
    check = subprocess.run(
        [str(dest / "bin" / "busybox"), "true"], capture_output=True, timeout=10, check=False
    )
    if check.returncode != 0:
        raise RuntimeError(f"busybox in {dest} does not run: {check.stderr!r}")
    return dest
