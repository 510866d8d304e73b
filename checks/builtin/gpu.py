"""NVIDIA GPUs: ``nvidia-smi``'s inventory when present, else the ``/dev/nvidiaN`` devices.

Skipped on nodes without either, so CPU-only nodes report nothing misleading. Tag ``GPU``
(what jobs put in ``Tags``) and facts ``gpu_count``, ``gpu_model``, ``gpu_memory_mb``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from checks.api import CheckContext, CheckResult, check
from protocol import CheckStatus

QUERY = "--query-gpu=name,memory.total,driver_version"
_DEVICE = re.compile(r"^nvidia[0-9]+$")


def parse_nvidia_smi(csv_text: str) -> list[dict[str, Any]]:
    """``nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader,nounits``."""
    gpus = []
    for line in csv_text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 3 or not fields[0]:
            continue
        memory = int(float(fields[1])) if re.fullmatch(r"[0-9.]+", fields[1]) else None
        gpus.append({"model": fields[0], "memory_mb": memory, "driver": fields[2]})
    return gpus


def device_count(dev_dir: Path = Path("/dev")) -> int:
    """How many ``/dev/nvidiaN`` device files exist (not nvidiactl, nvidia-uvm...)."""
    try:
        return sum(1 for entry in dev_dir.iterdir() if _DEVICE.match(entry.name))
    except OSError:
        return 0


def gpu_result(
    gpus: Sequence[dict[str, Any]], devices: int, smi_error: Optional[str]
) -> CheckResult:
    """The decision from what nvidia-smi said (if it ran) and the device files."""
    if gpus:
        models = sorted({g["model"] for g in gpus})
        facts = {
            "gpu_count": len(gpus),
            "gpu_model": models[0] if len(models) == 1 else ", ".join(models),
            "gpu_memory_mb": min((g["memory_mb"] or 0) for g in gpus),
            "gpu_driver": gpus[0]["driver"],
        }
        return CheckResult(CheckStatus.OK, f"{len(gpus)} x {facts['gpu_model']}", facts, ("GPU",))
    if devices == 0:
        return CheckResult(CheckStatus.SKIP, "no NVIDIA GPU on this node", {"gpu_count": 0})
    facts = {"gpu_count": devices, "gpu_model": ""}
    if smi_error:
        return CheckResult(
            CheckStatus.WARN,
            f"{devices} /dev/nvidia devices but nvidia-smi failed: {smi_error}",
            facts,
        )
    return CheckResult(
        CheckStatus.OK, f"{devices} NVIDIA device(s), no nvidia-smi", facts, ("GPU",)
    )


def query_nvidia_smi(timeout_s: float) -> tuple[list[dict[str, Any]], Optional[str]]:
    """(GPUs, None), or ([], why) when nvidia-smi is missing or fails."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [], None
    try:
        done = subprocess.run(
            [smi, QUERY, "--format=csv,noheader,nounits"],
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], str(exc)
    if done.returncode != 0:
        return [], done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}"
    return parse_nvidia_smi(done.stdout.decode("utf-8", "replace")), None


@check("gpu", timeout_s=10.0)
def gpu(ctx: CheckContext) -> CheckResult:
    gpus, error = query_nvidia_smi(timeout_s=8.0)
    devices = device_count(Path(ctx.options.get("dev_dir", "/dev")))
    return gpu_result(gpus, devices, error)
