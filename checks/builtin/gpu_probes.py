"""What a node's GPUs are: ``nvidia-smi`` and ``rocm-smi`` asked and read, device files found.

Each GPU is a plain dict (what goes into the ``gpu`` check's facts and, from there, into
the pilot's offers): ``id`` (the index ``CUDA_VISIBLE_DEVICES`` / ``ROCR_VISIBLE_DEVICES``
take), ``vendor`` (``nvidia``, ``amd``), ``model``, ``memory_mb`` (MiB), ``capability``
(CUDA compute capability ``8.0``; an AMD GPU's gfx target), ``driver``, ``cuda`` (the
highest CUDA version the driver runs), ``uuid``, ``bus_id`` and ``devices`` (the device
files a container needs for this GPU alone).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

NVIDIA_FIELDS = (
    "index",
    "uuid",
    "name",
    "memory.total",
    "compute_cap",
    "driver_version",
    "pci.bus_id",
)
NVIDIA_QUERY = "--query-gpu=" + ",".join(NVIDIA_FIELDS)
NVIDIA_FORMAT = "--format=csv,noheader,nounits"
ROCM_ARGS = ("--showproductname", "--showmeminfo", "vram", "--showbus", "--showdriverversion")
_CUDA_VERSION = re.compile(r"CUDA Version:\s*([0-9]+(?:\.[0-9]+)*)")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_NVIDIA_DEVICE = re.compile(r"^nvidia([0-9]+)$")
_DEVICE_MINOR = re.compile(r"^Device Minor:\s*([0-9]+)", re.MULTILINE)
_CARD = re.compile(r"^card([0-9]+)$")

Gpu = dict[str, Any]


def run_tool(argv: list[str], timeout_s: float) -> tuple[Optional[str], Optional[str]]:
    """(stdout, None), or (None, why) when the tool is missing (why None) or fails."""
    found = shutil.which(argv[0])
    if found is None:
        return None, None
    try:
        done = subprocess.run(
            [found, *argv[1:]], capture_output=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return None, (why[-1] if why else f"exit {done.returncode}")
    return done.stdout.decode("utf-8", "replace"), None


def _mib(text: str) -> int:
    return int(float(text)) if _NUMBER.fullmatch(text) else 0


def parse_nvidia_smi(csv_text: str) -> list[Gpu]:
    """``nvidia-smi --query-gpu=<NVIDIA_FIELDS> --format=csv,noheader,nounits``."""
    gpus = []
    for line in csv_text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != len(NVIDIA_FIELDS) or not fields[0].isdigit() or not fields[2]:
            continue
        index, uuid, name, memory, capability, driver, bus_id = fields
        gpus.append(
            {
                "id": index,
                "vendor": "nvidia",
                "model": name,
                "memory_mb": _mib(memory),
                "capability": capability if _NUMBER.fullmatch(capability) else "",
                "driver": driver,
                "cuda": "",
                "uuid": uuid,
                "bus_id": bus_id,
                "devices": [],
            }
        )
    return gpus


def cuda_version(summary_text: str) -> str:
    """The ``CUDA Version: 12.2`` of plain ``nvidia-smi``'s banner, or ``""``."""
    found = _CUDA_VERSION.search(summary_text)
    return found.group(1) if found else ""


def nvidia_minor(bus_id: str, proc_dir: Path) -> Optional[int]:
    """The ``/dev/nvidiaN`` number of the GPU at ``bus_id``, as the driver states it
    (``/proc/driver/nvidia/gpus/<bus>/information``): not always its index."""
    for name in (bus_id, bus_id.lower(), bus_id[4:].lower() if len(bus_id) > 12 else ""):
        if not name:
            continue
        try:
            text = (proc_dir / "driver" / "nvidia" / "gpus" / name / "information").read_text()
        except OSError:
            continue
        found = _DEVICE_MINOR.search(text)
        if found:
            return int(found.group(1))
    return None


NVIDIA_SHARED_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
"""Device files every NVIDIA GPU's user needs besides its own ``nvidiaN``."""


def nvidia_devices(gpu: Gpu, dev_dir: Path, proc_dir: Path) -> list[str]:
    """The GPU's ``/dev/nvidiaN`` and the shared control devices present."""
    minor = nvidia_minor(str(gpu.get("bus_id", "")), proc_dir)
    number = minor if minor is not None else int(gpu["id"])
    shared = [dev_dir / name for name in NVIDIA_SHARED_DEVICES]
    return [str(dev_dir / f"nvidia{number}")] + [str(path) for path in shared if path.exists()]


def query_nvidia(
    timeout_s: float, dev_dir: Path, proc_dir: Path
) -> tuple[list[Gpu], Optional[str]]:
    """NVIDIA GPUs from ``nvidia-smi``: ([], None) without it, ([], why) when it fails."""
    text, error = run_tool(["nvidia-smi", NVIDIA_QUERY, NVIDIA_FORMAT], timeout_s)
    if text is None:
        return [], error
    gpus = parse_nvidia_smi(text)
    banner, _ = run_tool(["nvidia-smi"], timeout_s)
    cuda = cuda_version(banner or "")
    for gpu in gpus:
        gpu["cuda"] = cuda
        gpu["devices"] = nvidia_devices(gpu, dev_dir, proc_dir)
    return gpus, None


def _field(card: dict[str, Any], *names: str) -> str:
    lowered = {str(key).lower(): value for key, value in card.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value not in (None, "", "N/A"):
            return str(value).strip()
    return ""


def parse_rocm_smi(json_text: str) -> list[Gpu]:
    """``rocm-smi --showproductname --showmeminfo vram --showbus --showdriverversion --json``:
    one ``cardN`` object per GPU, the driver under ``system``."""
    try:
        data = json.loads(json_text)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    system = data.get("system") if isinstance(data.get("system"), dict) else {}
    driver = _field(system or {}, "Driver version")
    gpus = []
    for key, card in sorted(data.items(), key=lambda item: _card_number(item[0])):
        number = _card_number(key)
        if number < 0 or not isinstance(card, dict):
            continue
        memory = _field(card, "VRAM Total Memory (B)")
        gpus.append(
            {
                "id": str(number),
                "vendor": "amd",
                "model": _field(card, "Card Series", "Card series", "Card model", "Card SKU"),
                "memory_mb": int(memory) // 2**20 if memory.isdigit() else 0,
                "capability": _field(card, "GFX Version"),
                "driver": _field(card, "Driver version") or driver,
                "cuda": "",
                "uuid": _field(card, "Unique ID"),
                "bus_id": _field(card, "PCI Bus"),
                "devices": [],
            }
        )
    return gpus


def _card_number(key: str) -> int:
    found = _CARD.match(key)
    return int(found.group(1)) if found else -1


def amd_devices(gpu: Gpu, dev_dir: Path) -> list[str]:
    """``/dev/kfd`` and the GPU's own render node (``/dev/dri/by-path/pci-<bus>-render``)."""
    devices = [str(dev_dir / "kfd")]
    link = dev_dir / "dri" / "by-path" / f"pci-{str(gpu.get('bus_id', '')).lower()}-render"
    try:
        target = os.path.normpath(os.path.join(link.parent, os.readlink(link)))
    except OSError:
        return devices
    return [*devices, target]


def query_rocm(timeout_s: float, dev_dir: Path) -> tuple[list[Gpu], Optional[str]]:
    """AMD GPUs from ``rocm-smi --json``: ([], None) without it, ([], why) when it fails."""
    text, error = run_tool(["rocm-smi", *ROCM_ARGS, "--json"], timeout_s)
    if text is None:
        return [], error
    gpus = parse_rocm_smi(text)
    for gpu in gpus:
        gpu["devices"] = amd_devices(gpu, dev_dir)
    return gpus, None


def nvidia_device_numbers(dev_dir: Path) -> list[int]:
    """The numbers of the ``/dev/nvidiaN`` files (not nvidiactl, nvidia-uvm...)."""
    try:
        names = [entry.name for entry in dev_dir.iterdir()]
    except OSError:
        return []
    found = (_NVIDIA_DEVICE.match(name) for name in names)
    return sorted(int(match.group(1)) for match in found if match)


def from_device_files(dev_dir: Path) -> list[Gpu]:
    """NVIDIA GPUs known only by their device files (no ``nvidia-smi``): the site describes
    them in the check's options."""
    return [
        {
            "id": str(number),
            "vendor": "nvidia",
            "model": "",
            "memory_mb": 0,
            "capability": "",
            "driver": "",
            "cuda": "",
            "uuid": "",
            "bus_id": "",
            "devices": nvidia_devices({"id": str(number)}, dev_dir, Path("/nonexistent")),
        }
        for number in nvidia_device_numbers(dev_dir)
    ]
