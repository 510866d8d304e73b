"""Which container images a job may name: only those in the locations the site allows.

A job's ``Container`` is a path on the node, and a container runtime shows whatever it
names to the payload as its root file system: ``Container = "/proc"`` or the pilot's own
directory would hand the payload the node's processes or the pilot's token. So an image a
*job* names is used only when its real path (every link resolved) lies inside one of the
site's ``allowed_images`` (directories, such as ``/cvmfs/unpacked.cern.ch``, or single image
files), resolved the same way. Links inside an allowed location may point anywhere inside
an allowed location (CVMFS's unpacked images are links into its ``.flat`` tree), never out
of them; the runtime is then given the resolved path, so swapping a link afterwards changes
nothing. Never allowed, whatever the list says: ``/proc``, ``/sys``, ``/dev`` and anything
holding or inside the pilot's directory (its token, other jobs' work dirs).

The site's ``default_image`` is the site's own choice and is not checked here. Images that
Apptainer fetches itself (``docker://``, ``oras://``) bring no node path; they are allowed
unless the site says ``allow_remote_images: false``.

A refused image is the job's fault, not the node's: the job fails with
``Container Image Not Allowed: <image>: <why>`` and is not rescheduled.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from wrapper.container import REMOTE_IMAGE_MARKER
from wrapper.errors import ImageNotAllowed
from wrapper.patterns import inside

NEVER_ALLOWED = ("/proc", "/sys", "/dev")
"""Kernel file systems: never an image, whatever the site's list holds."""


def allowed_image(
    image: str,
    allowed: Sequence[str],
    *,
    protected: Sequence[str] = (),
    remote_ok: bool = True,
) -> str:
    """The image's resolved path (or remote URI) if the site allows it; else ``ImageNotAllowed``.

    ``protected`` are node paths an image may neither hold nor lie inside (the pilot's
    directory).
    """
    if REMOTE_IMAGE_MARKER in image:
        if remote_ok:
            return image
        raise ImageNotAllowed(image, "images fetched from a registry are not allowed here")
    if not os.path.isabs(image):
        raise ImageNotAllowed(image, "not an absolute path")
    if ".." in image.split("/"):
        raise ImageNotAllowed(image, "'..' in the path")
    real = os.path.realpath(image)
    for kernel in NEVER_ALLOWED:
        if inside(real, kernel):
            raise ImageNotAllowed(image, f"{kernel} is never an image")
        if inside(kernel, real):
            raise ImageNotAllowed(image, f"it holds {kernel}")
    for path in protected:
        guarded = os.path.realpath(path)
        if inside(real, guarded) or inside(guarded, real):
            where = "is in" if inside(real, guarded) else "holds"
            raise ImageNotAllowed(image, f"it {where} the pilot's directory")
    if not any(inside(real, os.path.realpath(root)) for root in allowed if os.path.isabs(root)):
        where = ", ".join(allowed) if allowed else "none"
        raise ImageNotAllowed(image, f"not in a location this site allows for images ({where})")
    return real
