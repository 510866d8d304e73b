"""Check modules written to a tmp dir, as a site or community would ship them."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path
from typing import Callable

import pytest

_counter = itertools.count()

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
