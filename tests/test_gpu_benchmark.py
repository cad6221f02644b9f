"""`benchmarks/gpu.py`: its CPU half runs here (the CPU against itself: every comparison exact); its
CUDA half runs where torch sees a GPU."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]
SMALL = ["--epochs", "2", "--train", "128", "--test", "64", "--samples", "32", "--M", "4"]


def gpu_benchmark():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(device: str, capsys) -> tuple[int, str]:
    preset = str(ROOT / "configs" / "fmnist-full.yaml")
    code = gpu_benchmark().main(["--device", device, *SMALL, "--full-preset", preset])
    return code, capsys.readouterr().out


def test_cpu_half_compares_the_cpu_with_itself_exactly(capsys, one_thread):
    code, out = run("cpu", capsys)
    assert code == 0, out
    assert "accuracy and agreement identical: True, per-sample consistency equal: 1.0000" in out
    assert "largest |ΔCE| 0.00e+00" in out and "relative |Δcpu − Δcpu| 0.00e+00" in out
    hours = re.search(r"training ([0-9.]+) h, composite jobs ([0-9.]+) h", out)
    assert hours is not None and float(hours[1]) > 0 and float(hours[2]) > 0, out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_half_agrees_with_the_cpu(capsys):
    code, out = run("cuda", capsys)
    assert code == 0, out
