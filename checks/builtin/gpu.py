"""GPUs: ``nvidia-smi`` and ``rocm-smi`` inventories, else the ``/dev/nvidiaN`` devices.

Skipped on nodes without any, so CPU-only nodes report nothing misleading. Facts: ``gpus``
(one entry per GPU, see ``checks.builtin.gpu_probes``: what the pilot offers and hands to
its jobs one by one) and the summary ``gpu_count``, ``gpu_model``, ``gpu_memory_mb`` (the
smallest), ``gpu_capability`` (the lowest), ``gpu_driver``, ``gpu_cuda``, ``gpu_vendor``.
Tag ``GPU`` (what DIRAC jobs put in ``Tags``).

Which GPUs are this pilot's: those the batch system gave it (``CUDA_VISIBLE_DEVICES`` /
``ROCR_VISIBLE_DEVICES`` in its environment, by index or UUID), or the option ``devices``.
The site may state what the tools cannot tell, or correct them, with the options
``model``, ``memory_mb``, ``capability``, ``cuda``, ``driver`` (applied to every GPU).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from checks.api import CheckContext, CheckResult, check
from checks.builtin.gpu_probes import Gpu, from_device_files, query_nvidia, query_rocm
from protocol import CheckStatus, version_key

OVERRIDES = ("model", "memory_mb", "capability", "cuda", "driver")
VISIBLE_VARIABLES = {
    "nvidia": ("CUDA_VISIBLE_DEVICES",),
    "amd": ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"),
}
"""What a batch system sets to give a job some of the node's GPUs, per vendor."""
TOOL_TIMEOUT_S = 8.0


def _listed(value: Any) -> Optional[list[str]]:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


def _named(gpu: Gpu, names: Sequence[str]) -> bool:
    uuid = str(gpu.get("uuid", ""))
    return any(name == gpu["id"] or (len(name) > 4 and uuid.startswith(name)) for name in names)


def allowed(gpus: Sequence[Gpu], options: Mapping[str, Any], env: Mapping[str, str]) -> list[Gpu]:
    """The GPUs this pilot may use: option ``devices``, else what the batch system made
    visible to it (an empty variable: none), else all."""
    chosen = _listed(options.get("devices"))
    kept = []
    for gpu in gpus:
        names = chosen
        if names is None:
            for variable in VISIBLE_VARIABLES.get(str(gpu["vendor"]), ()):
                if variable in env:
                    names = _listed(env[variable])
                    break
        if names is None or _named(gpu, names):
            kept.append(gpu)
    return kept


def overridden(gpus: Sequence[Gpu], options: Mapping[str, Any]) -> list[Gpu]:
    """Every GPU with the site's stated values in place of the measured ones."""
    values = {name: options[name] for name in OVERRIDES if name in options}
    if "memory_mb" in values:
        values["memory_mb"] = int(values["memory_mb"])
    for name in ("capability", "cuda", "driver", "model"):
        if name in values:
            values[name] = str(values[name])
    return [{**gpu, **values} for gpu in gpus]


def summary_facts(gpus: Sequence[Gpu]) -> dict[str, Any]:
    models = sorted({str(g["model"]) for g in gpus if g["model"]})
    capabilities = [str(g["capability"]) for g in gpus if version_key(str(g["capability"]))]
    return {
        "gpus": [dict(g) for g in gpus],
        "gpu_count": len(gpus),
        "gpu_model": ", ".join(models),
        "gpu_memory_mb": min((int(g["memory_mb"] or 0) for g in gpus), default=0),
        "gpu_capability": min(capabilities, key=version_key, default=""),
        "gpu_driver": next((str(g["driver"]) for g in gpus if g["driver"]), ""),
        "gpu_cuda": next((str(g["cuda"]) for g in gpus if g["cuda"]), ""),
        "gpu_vendor": ", ".join(sorted({str(g["vendor"]) for g in gpus})),
    }


def describe(gpus: Sequence[Gpu]) -> str:
    """``4 GPUs: 2 x NVIDIA A100 (81920 MiB, 8.0), 2 x Tesla T4 (15360 MiB, 7.5); CUDA 12.2``."""
    groups: dict[tuple[str, int, str], int] = {}
    for gpu in gpus:
        key = (
            str(gpu["model"]) or "unknown model",
            int(gpu["memory_mb"] or 0),
            str(gpu["capability"]),
        )
        groups[key] = groups.get(key, 0) + 1
    parts = []
    for (model, memory_mb, capability), count in groups.items():
        about = ", ".join(x for x in (f"{memory_mb} MiB" if memory_mb else "", capability) if x)
        parts.append(f"{count} x {model}" + (f" ({about})" if about else ""))
    facts = summary_facts(gpus)
    tail = ", ".join(
        x
        for x in (
            f"driver {facts['gpu_driver']}" if facts["gpu_driver"] else "",
            f"CUDA {facts['gpu_cuda']}" if facts["gpu_cuda"] else "",
        )
        if x
    )
    noun = "GPU" if len(gpus) == 1 else "GPUs"
    return f"{len(gpus)} {noun}: " + ", ".join(parts) + (f"; {tail}" if tail else "")


def gpu_result(gpus: Sequence[Gpu], errors: Sequence[str], seen: int) -> CheckResult:
    """The decision from the GPUs kept, what the tools said when they failed, and ``seen``:
    how many GPUs the node has before the batch system's or the site's choice (those of a
    failing tool included: a broken driver's GPUs are counted, never offered)."""
    failed = f" ({'; '.join(errors)})" if errors else ""
    status = CheckStatus.WARN if errors else CheckStatus.OK
    if gpus:
        return CheckResult(status, describe(gpus) + failed, summary_facts(gpus), ("GPU",))
    if seen:
        return CheckResult(
            status,
            f"{seen} GPU(s) on the node, none usable by this pilot{failed}",
            summary_facts([]),
        )
    if errors:
        return CheckResult(CheckStatus.WARN, f"no GPU found{failed}", summary_facts([]))
    return CheckResult(CheckStatus.SKIP, "no GPU on this node", summary_facts([]))


def inventory(dev_dir: Path, proc_dir: Path, timeout_s: float) -> tuple[list[Gpu], list[str], int]:
    """The GPUs the tools show (the NVIDIA device files when ``nvidia-smi`` is not
    installed), the tools' failures, and how many GPUs the node has in all."""
    nvidia, nvidia_error = query_nvidia(timeout_s, dev_dir, proc_dir)
    amd, amd_error = query_rocm(timeout_s, dev_dir)
    errors = [
        f"{tool} failed: {why}"
        for tool, why in (("nvidia-smi", nvidia_error), ("rocm-smi", amd_error))
        if why
    ]
    unseen = len(from_device_files(dev_dir)) if nvidia_error else 0
    if not nvidia and not nvidia_error:
        nvidia = from_device_files(dev_dir)
    return nvidia + amd, errors, len(nvidia) + len(amd) + unseen


@check("gpu", timeout_s=20.0)
def gpu(ctx: CheckContext) -> CheckResult:
    dev_dir = Path(ctx.options.get("dev_dir", "/dev"))
    proc_dir = Path(ctx.options.get("proc_dir", "/proc"))
    found, errors, seen = inventory(dev_dir, proc_dir, TOOL_TIMEOUT_S)
    kept = overridden(allowed(found, ctx.options, os.environ), ctx.options)
    return gpu_result(kept, errors, seen)
