"""Small stand-in pilots for launcher tests, built with ``python -m zipapp``.

The launcher must not care what the pyz does, so its tests run a tiny one whose behaviour
they choose.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

LAUNCHER = REPO_ROOT / "packaging" / "pilot-launcher.sh"

# ``sleep`` waits for signals and reports each (USR1 goes on, TERM/INT exit 14 like the
# pilot); anything else prints its arguments and exits with $STUB_EXIT_CODE.
STUB_MAIN = """\
import os, signal, sys, time

args = sys.argv[1:]
if args[:1] == ["sleep"]:
    def report(number, frame):
        print("got", signal.Signals(number).name, flush=True)
        if number != signal.SIGUSR1:
            sys.exit(14)
    for name in ("SIGTERM", "SIGINT", "SIGUSR1"):
        signal.signal(getattr(signal, name), report)
    print("ready", os.getpid(), flush=True)
    while True:
        time.sleep(0.05)
print("args", repr(args), flush=True)
sys.exit(int(os.environ.get("STUB_EXIT_CODE", "0")))
"""


def build_pyz(directory: Path, main_source: str, name: str = "gridpilot-pilot.pyz") -> Path:
    """A zipapp running ``main_source``, with its ``.sha256`` beside it (sha256sum format)."""
    source = directory / f"{name}.src"
    source.mkdir(parents=True)
    (source / "__main__.py").write_text(main_source)
    pyz = directory / name
    subprocess.run([sys.executable, "-m", "zipapp", str(source), "-o", str(pyz)], check=True)
    digest = hashlib.sha256(pyz.read_bytes()).hexdigest()
    (directory / f"{name}.sha256").write_text(f"{digest}  {name}\n")
    return pyz


def stub_pyz(directory: Path) -> Path:
    return build_pyz(directory, STUB_MAIN)
