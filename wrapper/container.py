"""What the container runtimes share: the in-container work dir, binds, the payload's argv.

The job's work dir is bound at ``/srv`` inside every container (the convention OSG's
glidein wrappers use) and is the payload's cwd and HOME there. ``/cvmfs`` is bound
read-only when the node has it. Site binds are ``src[:dst[:ro|rw]]``; a source that does
not exist on the node is dropped with a log line, so one missing site path does not make
every container job on the node fail.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from wrapper.config import CVMFS
from wrapper.errors import ContainerImageNotFound, RuntimeFailure
from wrapper.plain import make_executable

logger = logging.getLogger(__name__)

CONTAINER_WORKDIR = "/srv"
"""Where the job's work dir is inside a container: its cwd and HOME."""

CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH inside a container unless the job sets its own: the node's PATH means nothing there."""

HOST_ENV: Mapping[str, str] = {"PATH": CONTAINER_PATH}
"""The whole environment of runtime processes on the node (bwrap, apptainer): fixed, so
nothing the job sets (``LD_PRELOAD``, ``PYTHONPATH``, ...) and nothing of the pilot's own
(its token) reaches a process running outside the container."""
REMOTE_IMAGE_MARKER = "://"
"""``docker://...``, ``oras://...``: images Apptainer fetches itself (no local file)."""


@dataclasses.dataclass(frozen=True)
class Bind:
    """One host path made visible inside the container."""

    source: str
    destination: str
    read_only: bool = False

    def apptainer_spec(self) -> str:
        """The ``--bind`` value: ``src:dst`` with ``:ro`` when read-only."""
        spec = f"{self.source}:{self.destination}"
        return spec + ":ro" if self.read_only else spec


def parse_bind(text: str) -> Bind:
    """``src``, ``src:dst`` or ``src:dst:ro|rw`` (Apptainer's syntax) as a ``Bind``."""
    parts = text.split(":")
    if not parts[0] or len(parts) > 3 or not os.path.isabs(parts[0]):
        raise RuntimeFailure(f"site bind {text!r}: expected /source[:/destination[:ro|rw]]")
    destination = parts[1] if len(parts) > 1 and parts[1] else parts[0]
    mode = parts[2] if len(parts) > 2 else "rw"
    if mode not in ("ro", "rw") or not os.path.isabs(destination):
        raise RuntimeFailure(f"site bind {text!r}: expected /source[:/destination[:ro|rw]]")
    return Bind(parts[0], os.path.normpath(destination), read_only=mode == "ro")


def node_binds(site_binds: Sequence[str], cvmfs_root: str = CVMFS) -> list[Bind]:
    """``/cvmfs`` (read-only) when present, then the site's binds whose source exists."""
    binds = [Bind(cvmfs_root, CVMFS, read_only=True)] if os.path.isdir(cvmfs_root) else []
    for text in site_binds:
        bind = parse_bind(text)
        if not os.path.exists(bind.source):
            logger.warning("site bind %s dropped: %s is not on this node", text, bind.source)
            continue
        if bind.destination in (CONTAINER_WORKDIR, "/"):
            raise RuntimeFailure(f"site bind {text!r} would hide the job's work dir")
        binds.append(bind)
    return binds


def check_local_image(image: str, *, directory_only: bool = False) -> Path:
    """The image's path; raise ``ContainerImageNotFound`` if it is missing or unreadable."""
    path = Path(image)
    if not path.is_absolute():
        raise ContainerImageNotFound(image, "not an absolute path")
    if directory_only and path.exists() and not path.is_dir():
        raise ContainerImageNotFound(image, "not a directory image")
    if not path.exists():
        raise ContainerImageNotFound(image, "does not exist")
    mode = os.R_OK | (os.X_OK if path.is_dir() else 0)
    if not os.access(path, mode):
        raise ContainerImageNotFound(image, "not readable")
    return path


def payload_argv(argv: Sequence[str], workdir: Path) -> list[str]:
    """The argv to run inside the container, with work-dir paths as the container sees them.

    A relative name is run from the work dir. A bare name shipped in the work dir wins
    over the image's PATH (the PATH of a SIF image cannot be searched before it starts).
    Shipped scripts that lost their execute bits get them back, as with plain execution.
    """
    if not argv:
        return []
    first = argv[0]
    shipped = workdir / first if first and not os.path.isabs(first) else None
    if shipped is not None and shipped.is_file():
        make_executable(str(shipped))
        if "/" not in first:
            first = f"{CONTAINER_WORKDIR}/{first}"
    return [first, *argv[1:]]


def container_env(env: Mapping[str, str], workdir: Path) -> dict[str, str]:
    """The payload's environment with host work-dir paths rewritten to ``/srv``."""
    host = str(workdir)
    result = {}
    for name, value in env.items():
        if value == host or value.startswith(host + "/"):
            value = CONTAINER_WORKDIR + value[len(host) :]
        result[name] = value
    return result


def wants_gpu(tags: Iterable[str]) -> bool:
    """Whether the job's Tags ask for a GPU (``GPU``, any case)."""
    return any(str(tag).strip().upper() == "GPU" for tag in tags)


def last_line_with(path: Path, prefix: str, tail_bytes: int = 16384) -> str:
    """The last line of ``path``'s tail starting with ``prefix`` ("" if none or unreadable)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - tail_bytes))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    matching = [line.strip() for line in lines if line.lstrip().startswith(prefix)]
    return matching[-1] if matching else ""
