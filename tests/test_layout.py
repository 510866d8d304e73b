"""The import rules of DESIGN.md section 1, checked over the source tree."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKER_PACKAGES = ("pilot", "wrapper", "checks")
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
    "path", [p for pkg in (*WORKER_PACKAGES, "coordinator") for p in _modules(pkg)],
    ids=lambda p: str(p.relative_to(ROOT)),
)  # fmt: skip
def test_every_module_postpones_annotations(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return
    assert "from __future__ import annotations" in text


def test_protocol_imports_only_the_standard_library() -> None:
    roots = {name.split(".")[0] for name in _imports(ROOT / "pilot" / "protocol.py")}
    assert roots <= set(sys.stdlib_module_names) | {"__future__"}


def test_checks_import_only_the_protocol_from_pilot() -> None:
    for path in _modules("checks"):
        for name in _imports(path):
            if name.split(".")[0] == "pilot":
                assert name == "pilot.protocol", f"{path.relative_to(ROOT)} imports {name}"
            assert name.split(".")[0] != "wrapper", f"{path.relative_to(ROOT)} imports {name}"


def test_wrapper_never_imports_checks_or_pilot_internals() -> None:
    for path in _modules("wrapper"):
        for name in _imports(path):
            assert name.split(".")[0] != "checks", f"{path.relative_to(ROOT)} imports {name}"
            if name.split(".")[0] == "pilot":
                assert name == "pilot.protocol", f"{path.relative_to(ROOT)} imports {name}"


def test_only_the_apptainer_runtime_imports_spython() -> None:
    users = [p for pkg in WORKER_PACKAGES for p in _modules(pkg) if any(
        n.split(".")[0] == "spython" for n in _imports(p))]  # fmt: skip
    assert all(p.name == "apptainer.py" for p in users), users


def test_the_pilot_cli_loads_without_server_packages() -> None:
    """Import the whole worker side with the server packages made unimportable."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {sorted(SERVER_ONLY)!r}:\n"
        "            raise ImportError('worker side imported ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import pilot.cli, pilot.agent, wrapper.job, checks.runner\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocker], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
