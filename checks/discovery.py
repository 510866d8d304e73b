"""Every check a pilot runs, from the four sources, with the config's settings applied.

Order: built-ins, installed entry points (group ``gridpilot.checks``), ``module:function``
refs from the config, executable scripts from the config's script dirs. Community code is
never imported here: entry points and refs are imported in their check's child process,
under its deadline, so a module that hangs on import cannot hang the pilot. A check that
cannot be loaded becomes a spec with ``load_error`` set, which the runner reports as failed.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from checks.api import CheckSource, CheckSpec, validate_name
from checks.config import ChecksConfig
from checks.errors import CheckDefinitionError
from checks.registry import builtin_checks
from checks.scripts import is_probe, script_name

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "gridpilot.checks"
SCRIPT_REF = "checks.scripts:run_script"
"""The ref a script spec carries; its child runs ``CheckSpec.script`` instead."""

_REF = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def discover(config: ChecksConfig) -> list[CheckSpec]:
    """The enabled checks of every source, in report order, settings applied.

    Run them with ``run_checks(specs, workdir=..., options=config.options,
    search_path=config.search_path)``.
    """
    specs: list[CheckSpec] = list(builtin_checks())
    if config.entry_points:
        specs += entry_point_checks(config.search_path)
    specs += [ref_check(name, ref) for name, ref in config.refs]
    for directory in config.script_dirs:
        specs += script_checks(directory)
    return [apply_settings(spec, config) for spec in specs if config.is_enabled(spec.name)]


def apply_settings(spec: CheckSpec, config: ChecksConfig) -> CheckSpec:
    """``spec`` with the config's fatal/timeout/interval overrides for its name."""
    settings = config.settings_for(spec.name)
    return dataclasses.replace(
        spec,
        fatal=spec.fatal if settings.fatal is None else settings.fatal,
        timeout_s=spec.timeout_s if settings.timeout_s is None else settings.timeout_s,
        interval_s=spec.interval_s if settings.interval_s is None else settings.interval_s,
    )


def entry_point_checks(search_path: Sequence[Path] = ()) -> list[CheckSpec]:
    """Checks that installed distributions declare in the ``gridpilot.checks`` group.

    Distributions are looked up on ``search_path`` first, then ``sys.path``; the same
    distribution found twice (a second copy further down the path) counts once.
    """
    paths = list(dict.fromkeys([str(p) for p in search_path] + sys.path))
    seen: set[tuple[str, str]] = set()
    specs = []
    for dist in importlib.metadata.distributions(path=paths):
        dist_name = dist.metadata["Name"] or "?"
        for entry in _group_entries(dist.entry_points):
            if (dist_name, entry.name) in seen:
                continue
            seen.add((dist_name, entry.name))
            origin = f"{dist_name} {dist.version}"
            specs.append(_spec(entry.name, entry.value, CheckSource.ENTRYPOINT, origin))
    return specs


def _group_entries(
    entries: Iterable[importlib.metadata.EntryPoint],
) -> list[importlib.metadata.EntryPoint]:
    return sorted((e for e in entries if e.group == ENTRY_POINT_GROUP), key=lambda e: e.name)


def ref_check(name: str, ref: str) -> CheckSpec:
    """A ``module:function`` ref from the config; imported only in its child process."""
    return _spec(name, ref, CheckSource.CONFIG, "config ref")


def script_checks(directory: Path) -> list[CheckSpec]:
    """One check per executable file in ``directory``, sorted by name.

    A missing directory is one failed check (the site asked for it); non-executable
    files are skipped with a log line, as Nagios' plugin dirs are.
    """
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        name = script_name(directory)
        message = f"script dir {directory} cannot be read: {exc.strerror or exc}"
        return [_failed(name, CheckSource.SCRIPT, str(directory), message)]
    specs = []
    for path in entries:
        if not is_probe(path):
            if path.is_file() and not path.name.startswith("."):
                logger.info("ignoring %s: not executable (chmod +x to run it as a check)", path)
            continue
        specs.append(
            CheckSpec(
                name=script_name(path),
                ref=SCRIPT_REF,
                source=CheckSource.SCRIPT,
                origin=str(path),
                script=str(path),
            )
        )
    return specs


def _spec(name: str, ref: str, source: CheckSource, origin: str) -> CheckSpec:
    try:
        validate_name(name)
    except CheckDefinitionError as exc:
        return _failed(_safe_name(name), source, origin, str(exc))
    if not _REF.match(ref.strip()):
        message = f"{ref!r} is not of the form 'module:function'"
        return _failed(name, source, origin, message)
    return CheckSpec(name=name, ref=ref.strip(), source=source, origin=origin)


def _failed(name: str, source: CheckSource, origin: str, message: str) -> CheckSpec:
    logger.warning("check %s from %s cannot be loaded: %s", name, origin, message)
    return CheckSpec(name=name, ref=SCRIPT_REF, source=source, origin=origin, load_error=message)


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60].lstrip(".-")
    return cleaned or "unnamed"
