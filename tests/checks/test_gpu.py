"""The gpu check against stand-in ``nvidia-smi``/``rocm-smi`` describing 4 GPUs of two
models (tests/fake_gpus.py), run the way the pilot runs it: in a child process, by the
real runner."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from checks.api import CheckSource
from checks.builtin.gpu_probes import cuda_version, parse_nvidia_smi, parse_rocm_smi
from checks.registry import load_ref
from checks.runner import run_checks
from protocol import CheckReport, CheckStatus, version_key
from tests.fake_gpus import NVIDIA_BANNER, make_fake_gpu_node, nvidia_csv

VISIBLE = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")


def _run(tmp_path: Path, options: dict[str, Any]) -> CheckReport:
    spec = load_ref("checks.builtin.gpu:gpu", source=CheckSource.BUILTIN)
    [report] = run_checks([spec], workdir=tmp_path, options={"gpu": options})
    return report


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in VISIBLE:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no real GPU tool gets in the way
    return monkeypatch


def test_parsers_read_what_the_tools_print() -> None:
    gpus = parse_nvidia_smi(nvidia_csv())
    assert [g["model"] for g in gpus] == ["NVIDIA A100-SXM4-80GB"] * 2 + ["Tesla T4"] * 2
    assert gpus[2]["memory_mb"] == 15360 and gpus[2]["capability"] == "7.5"
    assert gpus[0]["uuid"].startswith("GPU-aaaa0000") and gpus[3]["id"] == "3"
    assert parse_nvidia_smi("garbage\n0, x\n") == []
    assert cuda_version(NVIDIA_BANNER) == "12.2"
    assert cuda_version("no banner") == ""
    assert version_key("8.6") > version_key("8.0") > version_key("7.5")
    assert version_key("12.0") > version_key("9.0")
    assert parse_rocm_smi("not json") == [] and parse_rocm_smi("[]") == []


def test_four_gpus_of_two_models(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    node = make_fake_gpu_node(tmp_path / "node")
    clean_env.setenv("PATH", node.path_env("/usr/bin:/bin"))
    report = _run(tmp_path, node.options)
    assert report.status is CheckStatus.OK, report.message
    assert report.tags == ["GPU"]
    assert report.message == (
        "4 GPUs: 2 x NVIDIA A100-SXM4-80GB (81920 MiB, 8.0), "
        "2 x Tesla T4 (15360 MiB, 7.5); driver 535.104.05, CUDA 12.2"
    )
    facts = report.facts
    assert facts["gpu_count"] == 4
    assert facts["gpu_model"] == "NVIDIA A100-SXM4-80GB, Tesla T4"
    assert facts["gpu_memory_mb"] == 15360 and facts["gpu_capability"] == "7.5"
    assert facts["gpu_cuda"] == "12.2" and facts["gpu_vendor"] == "nvidia"
    by_id = {gpu["id"]: gpu for gpu in facts["gpus"]}
    # The driver numbers the T4s' device files the other way round from their indices.
    assert by_id["2"]["devices"][0] == str(node.dev_dir / "nvidia3")
    assert by_id["3"]["devices"][0] == str(node.dev_dir / "nvidia2")
    assert str(node.dev_dir / "nvidiactl") in by_id["0"]["devices"]


def test_the_batch_systems_choice_and_the_sites_word(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    node = make_fake_gpu_node(tmp_path / "node")
    clean_env.setenv("PATH", node.path_env("/usr/bin:/bin"))
    # Slurm gave this pilot GPU 1 and, by UUID, GPU 3.
    clean_env.setenv("CUDA_VISIBLE_DEVICES", "1,GPU-bbbb3333")
    report = _run(tmp_path, node.options)
    assert [gpu["id"] for gpu in report.facts["gpus"]] == ["1", "3"]
    clean_env.setenv("CUDA_VISIBLE_DEVICES", "")
    none_given = _run(tmp_path, node.options)
    assert none_given.status is CheckStatus.OK and none_given.tags == []
    assert none_given.message == "4 GPU(s) on the node, none usable by this pilot"
    clean_env.delenv("CUDA_VISIBLE_DEVICES")
    chosen = _run(tmp_path, {**node.options, "devices": "0", "memory_mb": 40000})
    assert [(g["id"], g["memory_mb"]) for g in chosen.facts["gpus"]] == [("0", 40000)]


def test_amd_gpus_from_rocm_smi(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    node = make_fake_gpu_node(tmp_path / "node", nvidia=False, amd=True)
    clean_env.setenv("PATH", node.path_env("/usr/bin:/bin"))
    report = _run(tmp_path, node.options)
    assert report.status is CheckStatus.OK, report.message
    gpus = report.facts["gpus"]
    assert [(g["id"], g["vendor"], g["model"]) for g in gpus] == [
        ("0", "amd", "AMD Instinct MI250X"),
        ("1", "amd", "AMD Instinct MI250X"),
    ]
    assert gpus[0]["memory_mb"] == 65536 and gpus[0]["capability"] == "gfx90a"
    assert gpus[0]["driver"] == "6.3.6"
    assert gpus[1]["devices"] == [
        str(node.dev_dir / "kfd"),
        str(node.dev_dir / "dri" / "renderD129"),
    ]
    clean_env.setenv("ROCR_VISIBLE_DEVICES", "1")
    assert [g["id"] for g in _run(tmp_path, node.options).facts["gpus"]] == ["1"]


def test_device_files_without_tools_and_a_failing_driver(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null"):
        (dev / name).write_text("")
    options = {"dev_dir": str(dev), "model": "Tesla V100", "memory_mb": 16384}
    report = _run(tmp_path, options)
    assert report.status is CheckStatus.OK and report.tags == ["GPU"]
    assert report.facts["gpu_count"] == 2 and report.facts["gpu_model"] == "Tesla V100"
    empty = tmp_path / "empty-dev"
    empty.mkdir()
    assert _run(tmp_path, {"dev_dir": str(empty)}).status is CheckStatus.SKIP
    # nvidia-smi installed but failing: a broken driver's GPUs are reported, not offered.
    broken = tmp_path / "broken-bin"
    broken.mkdir()
    smi = broken / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate' >&2\nexit 9\n"
    )
    smi.chmod(0o755)
    clean_env.setenv("PATH", f"{broken}:/usr/bin:/bin")
    failing = _run(tmp_path, {"dev_dir": str(dev)})
    assert failing.status is CheckStatus.WARN and failing.tags == []
    assert failing.facts["gpu_count"] == 0
    assert "2 GPU(s) on the node, none usable" in failing.message
    assert "nvidia-smi failed: NVIDIA-SMI has failed" in failing.message


@pytest.mark.skipif(
    shutil.which("nvidia-smi") is None,
    reason="no NVIDIA GPU on this machine (nvidia-smi not on PATH): the real-GPU check "
    "runs only where one exists; the stand-in tests above cover the logic",
)
def test_a_real_gpu(tmp_path: Path) -> None:
    report = _run(tmp_path, {})
    assert report.status is CheckStatus.OK, report.message
    assert report.facts["gpu_count"] >= 1
    for gpu in report.facts["gpus"]:
        assert gpu["model"] and gpu["memory_mb"] > 0 and version_key(gpu["capability"])
