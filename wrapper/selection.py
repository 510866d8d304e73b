"""Which runtime runs a job: the job's image, the site's container settings, the node.

| job image | site default_image | container_required | usable container runtime | result |
|---|---|---|---|---|
| yes | any | any | yes | first runtime in ``runtimes`` order that can run it |
| yes | any | any | no | Runtime Unavailable (infrastructure: rescheduled) |
| no | yes | any | yes | the default image, as above |
| no | no | no | any | plain if ``allow_plain``, else Runtime Unavailable |
| no | no | yes | any | Runtime Unavailable: the site wants a container, no image |

"Can run it": bwrap runs directory images only, and GPU jobs only with the GPUs the pilot
gave them (it binds their device files); Apptainer runs SIF
files, directories and ``docker://``-style URIs. A runtime is usable when the site allows
it and its binary is on the node. A missing image is found by the runtime chosen for it
(Container Image Not Found, infrastructure). An image the job names must first be in a
location the site allows (``wrapper.images``; the job's fault when it is not).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Callable

from protocol import JobAssignment
from wrapper.apptainer import ApptainerRuntime, ApptainerSettings
from wrapper.bubblewrap import BubblewrapRuntime, BubblewrapSettings
from wrapper.config import ContainerSettings
from wrapper.container import REMOTE_IMAGE_MARKER, wants_gpu
from wrapper.errors import RuntimeUnavailable
from wrapper.images import allowed_image
from wrapper.plain import PlainRuntime
from wrapper.runtime import ContainerRuntime


@dataclasses.dataclass(frozen=True)
class Choice:
    runtime: ContainerRuntime
    image: str
    """"" for plain execution."""


RuntimeFactory = Callable[[ContainerSettings], ContainerRuntime]

RUNTIMES: dict[str, RuntimeFactory] = {
    "apptainer": lambda s: ApptainerRuntime(
        ApptainerSettings(s.apptainer_path, s.binds, s.cvmfs_root, s.state_dir)
    ),
    "bwrap": lambda s: BubblewrapRuntime(BubblewrapSettings(s.bwrap_path, s.binds, s.cvmfs_root)),
    "plain": lambda s: PlainRuntime(),
}
"""Runtimes by name; a new runtime registers a factory here."""


def usable_runtimes(settings: ContainerSettings) -> list[str]:
    """Container runtimes the site allows and the node has, in preference order."""
    usable = []
    for name in settings.runtimes:
        factory = RUNTIMES.get(name)
        if factory is not None and name != "plain" and factory(settings).available():
            usable.append(name)
    return usable


def _can_run(runtime: ContainerRuntime, image: str, gpu: bool, gpu_devices: int) -> bool:
    if gpu and not getattr(runtime, "supports_gpu", False):
        return False
    if gpu and runtime.name == "bwrap" and not gpu_devices:
        return False  # bwrap shows a GPU only by binding its device files: it needs them
    if runtime.name == "bwrap":
        return REMOTE_IMAGE_MARKER not in image and not os.path.isfile(image)
    return True


def choose_runtime(
    job_image: str,
    gpu: bool,
    settings: ContainerSettings,
    allow_plain: bool,
    *,
    protected: Sequence[str] = (),
    gpu_devices: int = 0,
) -> Choice:
    """The runtime and image for a job, by the table above; raise ``RuntimeUnavailable``,
    or ``ImageNotAllowed`` for a job image outside the site's locations (``protected``:
    node paths no image may hold or lie in, the pilot's directory)."""
    if job_image:
        guarded = [*protected, str(settings.state_dir)] if settings.state_dir else protected
        job_image = allowed_image(
            job_image,
            settings.allowed_images,
            protected=guarded,
            remote_ok=settings.allow_remote_images,
        )
    image = job_image or settings.default_image
    if not image:
        if settings.required:
            raise RuntimeUnavailable("the site requires a container and the job names no image")
        if not allow_plain:
            raise RuntimeUnavailable("plain execution is not allowed on this site")
        return Choice(PlainRuntime(), "")
    usable = usable_runtimes(settings)
    for name in usable:
        runtime = RUNTIMES[name](settings)
        if _can_run(runtime, image, gpu, gpu_devices):
            return Choice(runtime, image)
    wanted = "a GPU container" if gpu else "a container"
    raise RuntimeUnavailable(
        f"no runtime for {wanted} with image {image} "
        f"(site allows: {', '.join(settings.runtimes) or 'none'}; "
        f"usable here: {', '.join(usable) or 'none'})"
    )


_NO = frozenset({"0", "false", "no", "off", "none"})


def job_wants_gpu(job: JobAssignment) -> bool:
    """Whether the job was given GPUs, or its Tags (or RequiredTag) ask for one."""
    if job.gpus:
        return True
    tags: list[object] = []
    for name in ("Tags", "Tag", "RequiredTag"):
        value = job.description.get(name)
        tags.extend(value if isinstance(value, list) else [value] if value else [])
    return wants_gpu(str(tag) for tag in tags)


def job_network(job: JobAssignment, settings: ContainerSettings) -> bool:
    """Network in the container: the site allows it and the job did not say ``Network = no``."""
    asked = job.description.get("Network")
    refused = asked is False or str(asked).strip().lower() in _NO if asked is not None else False
    return settings.network and not refused


RUNTIME_TAGS = {"apptainer": ("apptainer", "singularity"), "bwrap": ("bwrap",)}
"""Tags the node checks give each runtime (Apptainer may be installed as singularity)."""


def offered_runtimes(settings: ContainerSettings, facts: Mapping[str, object]) -> list[str]:
    """What the pilot advertises: usable runtimes the ``containers`` check saw working
    (when it ran; its fact ``container_runtimes`` lists them)."""
    usable = usable_runtimes(settings)
    working = facts.get("container_runtimes")
    if not isinstance(working, list):
        return usable
    return [name for name in usable if set(RUNTIME_TAGS.get(name, (name,))) & set(working)]


def without_runtime(settings: ContainerSettings, name: str) -> ContainerSettings:
    """``settings`` no longer allowing ``name`` (after it failed on its own)."""
    return dataclasses.replace(settings, runtimes=tuple(r for r in settings.runtimes if r != name))


def advertised_tags(tags: Sequence[str], dropped: Collection[str]) -> list[str]:
    """The node's tags without those of runtimes the pilot stopped offering."""
    hidden = {tag for name in dropped for tag in RUNTIME_TAGS.get(name, (name,))}
    return [tag for tag in tags if tag not in hidden]
