"""The layering of docs/architecture.md ("Layers"), checked over the source tree: which of our
packages may import which, what the worker side must never import, and where the wire
vocabulary is spelt."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKER_PACKAGES = ("protocol", "pilot", "wrapper", "checks")
SERVER_ONLY = {"coordinator", "fastapi", "uvicorn", "sqlalchemy", "pydantic", "starlette"}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


WORKER_MODULES = [p for pkg in WORKER_PACKAGES for p in _modules(pkg)]


@pytest.mark.parametrize("path", WORKER_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_worker_side_never_imports_server_code(path: Path) -> None:
    bad = {name for name in _imports(path) if name.split(".")[0] in SERVER_ONLY}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize(
    "path", [p for pkg in (*WORKER_PACKAGES, "coordinator", "client") for p in _modules(pkg)],
    ids=lambda p: str(p.relative_to(ROOT)),
)  # fmt: skip
def test_every_module_postpones_annotations(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return
    assert "from __future__ import annotations" in text


# Which of our packages each package may import: every arrow points down, none runs back up.
# The wire contract (`protocol`) sits at the bottom and imports only the standard library;
# the users' client (`client`, the `gridpilot` command) sits on top: it reads job files
# with the coordinator's parser, calls it through the pilot's HTTP client and packs
# sandboxes with the wrapper's code.
OURS = ("protocol", "checks", "wrapper", "pilot", "coordinator", "client")
MAY_IMPORT: dict[str, frozenset[str]] = {
    "protocol": frozenset(),
    "checks": frozenset({"protocol"}),
    "wrapper": frozenset({"protocol"}),
    "pilot": frozenset({"protocol", "checks", "wrapper"}),
    "coordinator": frozenset({"protocol"}),
    "client": frozenset({"protocol", "wrapper", "pilot", "coordinator"}),
}


def test_the_architecture_page_shows_the_layering_as_it_is() -> None:
    """docs/architecture.md's table of layers is MAY_IMPORT, row for row."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text.split("| package | may import, of ours |", 1)[1].split("\n\n", 1)[0]
    documented: dict[str, frozenset[str]] = {}
    for row in table.strip().splitlines()[1:]:
        package, allowed = (cell.strip() for cell in row.strip("|").split("|"))
        documented[package.strip("`")] = frozenset(re.findall(r"`(\w+)`", allowed))
    assert documented == MAY_IMPORT


def test_every_package_of_ours_has_a_layering_rule() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages - {"tests", "bench"} <= set(MAY_IMPORT), (
        "a new top-level package needs a line in MAY_IMPORT (and in docs/architecture.md)"
    )


@pytest.mark.parametrize(
    "path", [p for pkg in OURS for p in _modules(pkg)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_imports_follow_the_layers(path: Path) -> None:
    package = path.relative_to(ROOT).parts[0]
    ours = {name.split(".")[0] for name in _imports(path)} & set(MAY_IMPORT)
    bad = ours - MAY_IMPORT[package] - {package}
    assert not bad, f"{path.relative_to(ROOT)} ({package}) imports {sorted(bad)}"


def test_protocol_imports_only_the_standard_library() -> None:
    for path in _modules("protocol"):
        roots = {name.split(".")[0] for name in _imports(path)}
        assert roots <= set(sys.stdlib_module_names) | {"__future__"}, path


def test_only_the_apptainer_runtime_imports_spython() -> None:
    users = [p for pkg in WORKER_PACKAGES for p in _modules(pkg) if any(
        n.split(".")[0] == "spython" for n in _imports(p))]  # fmt: skip
    assert all(p.name == "apptainer.py" for p in users), users


BLOCKER = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    f"        if name.split('.')[0] in {sorted(SERVER_ONLY)!r}:\n"
    "            raise ImportError('worker side imported ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
)
"""Makes the server packages unimportable in a child Python."""


def test_the_pilot_cli_loads_without_server_packages() -> None:
    """Import the whole worker side with the server packages made unimportable."""
    code = BLOCKER + "import pilot.cli, pilot.agent, wrapper.job, checks.runner\n"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("argv", "exit_code"),
    [
        (["pilot", "--help"], 0),
        (["checks", "run", "--only", "python", "--format", "json", "--workdir", "{tmp}"], 0),
        (["checks", "list"], 0),
        # Parses every kind of option (paths too), loads the config, stops at the missing token.
        (["pilot", "--url", "http://127.0.0.1:1", "--workdir", "{tmp}", "--cores", "1"], 2),
    ],
    ids=["pilot --help", "checks run", "checks list", "pilot without a token"],
)
def test_worker_commands_run_without_server_packages(
    tmp_path: Path, argv: list[str], exit_code: int
) -> None:
    """Run a command, not only import it: a CLI library may import more once a command
    parses its options (typer 0.29 imports pydantic then). What it loaded is checked after."""
    args = [arg.format(tmp=tmp_path) for arg in argv]
    code = BLOCKER + (
        "from pilot.cli import build_app\n"
        "try:\n"
        f"    build_app()({args!r}, prog_name='gridpilot')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code or 0\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & "
        f"set({sorted(SERVER_ONLY)!r}))\n"
        "print('LOADED', loaded, 'EXIT', code, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
    )
    assert "LOADED [] EXIT" in result.stderr, result.stderr
    assert result.returncode == exit_code, result.stderr


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def _codes_compared(path: Path) -> set[str]:
    """String literals compared with something's ``.code`` (``exc.code == "log_gap"``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Attribute) and s.attr == "code" for s in sides):
                found.update(
                    s.value
                    for s in sides
                    if isinstance(s, ast.Constant) and isinstance(s.value, str)
                )
    return found


@pytest.mark.parametrize(
    "path",
    [p for pkg in OURS if pkg != "protocol" for p in _modules(pkg)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_wire_vocabulary_is_spelt_only_in_the_contract(path: Path) -> None:
    """Header names and error codes come from ``protocol`` (HEADERS, ErrorCode) on both sides."""
    from protocol import HEADERS

    spelt = _string_constants(path) & set(HEADERS)
    assert not spelt, f"{path.relative_to(ROOT)} spells header(s) {sorted(spelt)}: use protocol's"
    compared = _codes_compared(path)
    assert not compared, f"{path.relative_to(ROOT)} matches error codes {sorted(compared)}"
