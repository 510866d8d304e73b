"""Where checks come from.

The built-ins and loading ``module:function`` references. ``checks.discovery`` adds the
other sources (entry points, config refs, scripts) and applies the config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from checks.api import CheckFunction, CheckSource, CheckSpec, attached_spec
from checks.errors import CheckDefinitionError, CheckLoadError

logger = logging.getLogger(__name__)

BUILTIN_REFS = (
    "checks.builtin.python:python",
    "checks.builtin.platform:platform",
    "checks.builtin.cores:cores",
    "checks.builtin.memory:memory",
    "checks.builtin.disk:disk",
    "checks.builtin.load:load",
    "checks.builtin.timeleft:timeleft",
    "checks.builtin.userns:userns",
    "checks.builtin.containers:containers",
    "checks.builtin.cvmfs:cvmfs",
    "checks.builtin.gpu:gpu",
    "checks.builtin.cpuspeed:cpuspeed",
    "checks.builtin.coordinator:coordinator",
    "checks.builtin.clock:clock",
)


def builtin_checks() -> list[CheckSpec]:
    """The built-in checks, in the order they are reported."""
    return [load_ref(ref, source=CheckSource.BUILTIN) for ref in BUILTIN_REFS]


def load_ref(
    ref: str,
    *,
    source: CheckSource = CheckSource.CONFIG,
    search_path: Sequence[Path] = (),
) -> CheckSpec:
    """Import ``module:function`` in this process and return its CheckSpec.

    Raises CheckLoadError when the module or name cannot be found and
    CheckDefinitionError when the target is not a ``@check`` function. ``search_path``
    directories are tried before ``sys.path`` for this import only.
    """
    return load_check(ref, source=source, search_path=search_path)[0]


def load_check(
    ref: str,
    *,
    source: CheckSource = CheckSource.CONFIG,
    search_path: Sequence[Path] = (),
) -> tuple[CheckSpec, CheckFunction]:
    """Like ``load_ref`` but also return the check function itself."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise CheckLoadError(f"check ref {ref!r} is not of the form 'module:function'")
    with _extra_path(search_path):
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            # Boundary: importing foreign code may raise anything; the caller reports it.
            logger.debug("importing %s failed", module_name, exc_info=True)
            raise CheckLoadError(
                f"check {ref!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
            ) from exc
    target = getattr(module, attr, None)
    if target is None:
        raise CheckLoadError(f"check {ref!r}: module {module_name!r} has no {attr!r}")
    spec = attached_spec(target)
    if spec is None:
        raise CheckDefinitionError(
            f"check {ref!r}: {attr!r} is not decorated with @check() from the checks package"
        )
    function: CheckFunction = target
    return dataclasses.replace(spec, ref=ref, source=source), function


@contextlib.contextmanager
def _extra_path(search_path: Sequence[Path]) -> Iterator[None]:
    added = [str(p) for p in search_path if str(p) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for entry in added:
            if entry in sys.path:
                sys.path.remove(entry)
