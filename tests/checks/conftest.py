"""Check modules written to a tmp dir, as a site or community would ship them."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import pytest

_counter = itertools.count()

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_SOURCE = REPO_ROOT / "docs" / "examples" / "checks-plugin"

HEADER = """\
from __future__ import annotations

import os
import sys
import time

from checks import CheckContext, CheckResult, Status, check
"""

WriteModule = Callable[[str], str]


@pytest.fixture
def search_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "site-checks"
    directory.mkdir()
    return directory


@pytest.fixture
def write_module(search_dir: Path) -> WriteModule:
    """Write a check module into ``search_dir``; return its (unique) module name."""

    def write(body: str) -> str:
        name = f"site_checks_{next(_counter)}_{search_dir.parent.name.replace('-', '_')}"
        source = HEADER + "\n\n" + textwrap.dedent(body)
        (search_dir / f"{name}.py").write_text(source)
        return name

    return write


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin, really installed (``pip install --target``) into its own dir."""
    source = tmp_path_factory.mktemp("plugin-src") / "checks-plugin"
    # pip builds in the source tree; build from a copy so docs/ stays clean.
    shutil.copytree(PLUGIN_SOURCE, source)
    target = tmp_path_factory.mktemp("plugin-install")
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target"]
    done = subprocess.run(
        [*command, str(target), str(source)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return target
