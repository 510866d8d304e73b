"""The single-file pilot's ``__main__``: unpack into the work dir once, then run the pilot CLI.

psutil's compiled module cannot be imported from inside a zip, and modules imported from a
zip are compiled again at every start (zipimport never caches bytecode), so the archive's
``lib/`` and this machine's ``arch/<machine>/`` are extracted once into
``<workdir>/.gridpilot-pyz/<build id>/`` and imported from there; Python keeps their
bytecode beside them, inside that cache. Later starts in the same work dir find the cache
and only pay one ``stat``. Extraction goes to a temporary directory renamed into place, so
two pilots starting in the same work dir never see a half-written cache.

The work dir is the pilot's: ``--workdir`` on the command line, else ``GRIDPILOT_WORKDIR``,
else ``workdir`` in the ``--config`` file, else the current directory (``checks run``'s
default). Nothing is written anywhere else: not in HOME, not in /tmp, not beside the pyz.

This file must still parse on old Pythons, to tell their users what is wrong: annotations
are strings and nothing newer than Python 3.6 syntax is used.
"""

import os
import sys

BUILD_ID = "@BUILD_ID@"
"""Replaced at build time by a digest of the archive's contents."""

MIN_PYTHON = (3, 9)
EXIT_CANNOT_START = 2
"""The pilot's exit code for bad configuration or usage."""

CACHE_DIR_NAME = ".gridpilot-pyz"
ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


class CannotStart(Exception):
    """The pyz cannot set itself up here; the message says why."""


def _option(argv: "list[str]", name: str) -> "str | None":
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``argv``, the last one winning."""
    value = None
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1 :]
    return value


def _workdir_from_config(archive: str, path: str) -> "str | None":
    """``workdir`` from a pilot YAML config, read with the archive's pure-Python yaml."""
    sys.path.insert(0, os.path.join(archive, "lib"))
    try:
        import yaml

        with open(os.path.expanduser(path), encoding="utf-8") as stream:
            data = yaml.safe_load(stream) or {}
    except (OSError, ValueError, ImportError):
        return None  # the pilot itself reports an unreadable config, with its exit code
    finally:
        del sys.path[0]
        for name in [m for m in sys.modules if m == "yaml" or m.startswith("yaml.")]:
            del sys.modules[name]
    section = data.get("pilot", data) if isinstance(data, dict) else None
    value = section.get("workdir") if isinstance(section, dict) else None
    return str(value) if value else None


def find_workdir(archive: str, argv: "list[str]", environ: "dict[str, str]") -> str:
    """The pilot's work dir, with the pilot's own precedence (CLI > env > config file)."""
    workdir = _option(argv, "--workdir") or environ.get("GRIDPILOT_WORKDIR")
    config = _option(argv, "--config")
    if not workdir and config:
        workdir = _workdir_from_config(archive, config)
    return os.path.abspath(os.path.expanduser(workdir or "."))


def machine_arch() -> str:
    machine = os.uname().machine
    arch = ARCH_ALIASES.get(machine.lower())
    if arch is None:
        raise CannotStart(f"no psutil build for this machine ({machine}); x86_64 and aarch64 only")
    return arch


def _extract(archive: str, arch: str, target: str) -> None:
    """Unpack ``lib/`` and ``arch/<arch>/`` into ``target`` through a temporary sibling."""
    import shutil
    import zipfile

    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    temporary = f"{target}.tmp-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    prefixes = ("lib/", f"arch/{arch}/")
    with zipfile.ZipFile(archive) as bundle:
        members = [name for name in bundle.namelist() if name.startswith(prefixes)]
        bundle.extractall(temporary, members)
    try:
        os.rename(temporary, target)
    except OSError:
        # Another pilot in this work dir finished first: its copy is identical.
        shutil.rmtree(temporary, ignore_errors=True)
        if not os.path.isdir(target):
            raise


def prepare(archive: str, workdir: str) -> "list[str]":
    """The directories to import from, extracting them on the first start in ``workdir``."""
    arch = machine_arch()
    target = os.path.join(workdir, CACHE_DIR_NAME, BUILD_ID)
    if not os.path.isdir(target):
        try:
            _extract(archive, arch, target)
        except OSError as exc:
            raise CannotStart(f"cannot unpack into {target}: {exc}") from exc
    return [os.path.join(target, "lib"), os.path.join(target, "arch", arch)]


def main() -> None:
    if sys.version_info < MIN_PYTHON:
        wanted = ".".join(str(part) for part in MIN_PYTHON)
        sys.stderr.write(
            f"gridpilot-pilot needs Python >= {wanted}, this is {sys.version.split()[0]}\n"
        )
        sys.exit(EXIT_CANNOT_START)
    archive = os.path.abspath(sys.argv[0])
    try:
        workdir = find_workdir(archive, sys.argv[1:], dict(os.environ))
        paths = prepare(archive, workdir)
    except CannotStart as exc:
        sys.stderr.write(f"gridpilot-pilot: {exc}\n")
        sys.exit(EXIT_CANNOT_START)
    # The pilot imports from the extracted copy only, never from the zip itself.
    sys.path[:] = paths + [p for p in sys.path if os.path.abspath(p or ".") != archive]
    # Rich (with Pygments, about 1 MB compressed) is left out: Typer's switch for plain help.
    os.environ["TYPER_USE_RICH"] = "0"
    from pilot.cli import main as pilot_main

    pilot_main()


if __name__ == "__main__":
    main()
