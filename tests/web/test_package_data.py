"""The portal's templates and static files ship in the wheel: every one of them is named by
the package-data patterns in pyproject.toml (a file they miss would 404 once installed)."""

from __future__ import annotations

import fnmatch

import tomllib

from tests.conftest import REPO_ROOT


def test_every_template_and_static_file_is_package_data() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["coordinator.web"]
    web = REPO_ROOT / "coordinator" / "web"
    files = [
        path.relative_to(web).as_posix()
        for folder in ("templates", "static")
        for path in (web / folder).rglob("*")
        if path.is_file()
    ]
    assert len(files) > 10
    missed = [name for name in files if not any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert not missed, f"not shipped in the wheel: {missed}"
