"""A node with 4 GPUs of two models, at the edge of the machine: ``nvidia-smi`` and
``rocm-smi`` stand-ins on PATH, and the device and ``/proc`` files the drivers would make.

Like a fake clock, they answer exactly what the real tools print (the CSV of
``--query-gpu ... --format=csv,noheader,nounits``, the banner with the CUDA version,
``rocm-smi --json``); everything that reads them is our real code.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

NVIDIA_GPUS = (
    # index, uuid, name, memory MiB, capability, bus id, device minor
    (
        "0",
        "GPU-aaaa0000-0000-0000-0000-000000000000",
        "NVIDIA A100-SXM4-80GB",
        81920,
        "8.0",
        "00000000:07:00.0",
        0,
    ),
    (
        "1",
        "GPU-aaaa1111-1111-1111-1111-111111111111",
        "NVIDIA A100-SXM4-80GB",
        81920,
        "8.0",
        "00000000:0B:00.0",
        1,
    ),
    (
        "2",
        "GPU-bbbb2222-2222-2222-2222-222222222222",
        "Tesla T4",
        15360,
        "7.5",
        "00000000:48:00.0",
        3,
    ),
    (
        "3",
        "GPU-bbbb3333-3333-3333-3333-333333333333",
        "Tesla T4",
        15360,
        "7.5",
        "00000000:4C:00.0",
        2,
    ),
)
"""Two A100s and two T4s; the T4s' device minors are swapped against their indices, as
a driver may number them."""
DRIVER = "535.104.05"
CUDA = "12.2"

NVIDIA_BANNER = (
    "+-----------------------------------------------------------------------------+\n"
    f"| NVIDIA-SMI {DRIVER}   Driver Version: {DRIVER}   CUDA Version: {CUDA}     |\n"
    "|-------------------------------+----------------------+----------------------+\n"
)

ROCM_JSON = {
    "card0": {
        "Card Series": "AMD Instinct MI250X",
        "Card Model": "0x740c",
        "Card SKU": "D65209",
        "GFX Version": "gfx90a",
        "VRAM Total Memory (B)": str(64 * 2**30),
        "PCI Bus": "0000:C1:00.0",
    },
    "card1": {
        "Card Series": "AMD Instinct MI250X",
        "Card Model": "0x740c",
        "Card SKU": "D65209",
        "GFX Version": "gfx90a",
        "VRAM Total Memory (B)": str(64 * 2**30),
        "PCI Bus": "0000:C6:00.0",
    },
    "system": {"Driver version": "6.3.6"},
}


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def nvidia_csv() -> str:
    return "".join(
        f"{index}, {uuid}, {name}, {memory}, {capability}, {DRIVER}, {bus}\n"
        for index, uuid, name, memory, capability, bus, _minor in NVIDIA_GPUS
    )


@dataclass(frozen=True)
class FakeGpuNode:
    bin_dir: Path
    dev_dir: Path
    proc_dir: Path

    @property
    def options(self) -> dict[str, str]:
        """The ``gpu`` check's options pointing at this node's device and /proc files."""
        return {"dev_dir": str(self.dev_dir), "proc_dir": str(self.proc_dir)}

    def path_env(self, path: str = os.environ.get("PATH", "")) -> str:
        return f"{self.bin_dir}{os.pathsep}{path}"


def make_fake_gpu_node(root: Path, *, nvidia: bool = True, amd: bool = False) -> FakeGpuNode:
    """Write the tools, devices and driver files of a GPU node under ``root``."""
    bin_dir, dev_dir, proc_dir = root / "bin", root / "dev", root / "proc"
    for directory in (bin_dir, dev_dir, proc_dir):
        directory.mkdir(parents=True, exist_ok=True)
    if nvidia:
        (root / "nvidia.csv").write_text(nvidia_csv())
        (root / "nvidia.banner").write_text(NVIDIA_BANNER)
        _script(
            bin_dir / "nvidia-smi",
            f'case "$1" in --query-gpu=*) cat "{root}/nvidia.csv";; '
            f'*) cat "{root}/nvidia.banner";; esac\n',
        )
        for name in ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"):
            (dev_dir / name).write_text("")
        for _index, _uuid, _name, _memory, _cap, bus, minor in NVIDIA_GPUS:
            (dev_dir / f"nvidia{minor}").write_text("")
            info = proc_dir / "driver" / "nvidia" / "gpus" / bus.lower()
            info.mkdir(parents=True, exist_ok=True)
            (info / "information").write_text(f"Model: x\nDevice Minor: {minor}\n")
    if amd:
        (root / "rocm.json").write_text(json.dumps(ROCM_JSON))
        _script(bin_dir / "rocm-smi", f'cat "{root}/rocm.json"\n')
        (dev_dir / "kfd").write_text("")
        by_path = dev_dir / "dri" / "by-path"
        by_path.mkdir(parents=True, exist_ok=True)
        for number, card in enumerate(("card0", "card1")):
            render = dev_dir / "dri" / f"renderD{128 + number}"
            render.write_text("")
            bus = str(ROCM_JSON[card]["PCI Bus"]).lower()  # type: ignore[index]
            (by_path / f"pci-{bus}-render").symlink_to(f"../renderD{128 + number}")
    return FakeGpuNode(bin_dir, dev_dir, proc_dir)
