"""Running a bench script at its smoke size, as CI does: one place for how it is started and
how its failure is shown."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import pytest

from tests.conftest import REPO_ROOT


def require_command(name: str) -> None:
    """Fail under CI, where tests/setup-system.sh installs ``name``; skip elsewhere."""
    if shutil.which(name) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (tests/setup-system.sh installs it)")
        pytest.skip(f"{name} is not installed")


def run_smoke(
    script: str,
    output: Path,
    *args: str,
    timeout_s: float = 180,
    env: Optional[Mapping[str, str]] = None,
) -> tuple[str, Any]:
    """``python -m bench.NAME --smoke --output OUTPUT ARGS`` (``script`` is ``NAME.py``): its
    table (stdout) and its JSON result.

    The test fails with the script's output if it exits non-zero.
    """
    command = [
        sys.executable,
        "-m",
        f"bench.{script.removesuffix('.py')}",
        "--smoke",
        "--output",
        str(output),
    ]
    done = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO_ROOT,
        env=None if env is None else dict(env),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads(output.read_text())
