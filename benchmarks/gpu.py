"""The CUDA path checked: ResNet-20 trained on the device, then the composite engine, one isotropy step
and the separation measures on the device against the CPU, and the full-size preset extrapolated.

    python benchmarks/gpu.py [--epochs 3] [--train 4096] [--device cuda] [--full-preset FILE]

1. Training: ResNet-20 for `--epochs` epochs on `--device` (Fashion-MNIST padded to 32×32 from Debian's
   `dataset-fashion-mnist` when its files are there, else CIFAR-shaped class templates plus noise),
   the paper's recipe (SGD 0.1, momentum 0.9, weight decay 1e-4, crop-and-flip, batch 128); img/s of
   the best epoch.
2. Composite engine: the full (s, t) matrix of the saved epochs at depth 4 on the device and on the CPU,
   from the same checkpoints: share of identical predictions (accuracy, agreement and per-sample
   consistency equal) and the largest cross-entropy difference (should be ≤ 1e-4); pair-samples/s of each.
3. Isotropy step: the M one-step SGD perturbations of the last checkpoint at depth 4 on both devices;
   relative difference of the perturbations and of their effective rank.
4. Separation: the load curve (D per layer) of the last checkpoint on both; largest relative difference.
5. The hardware's ceiling: training and composite FLOP/s as a share of one large fp32 matmul's, measured
   in the same run.
6. Extrapolation: training and composite time of `--full-preset` at the rates measured here
   (`featdyn.costs` counts the work; the measured FLOP/s replace its assumed ones).

Without CUDA (or with `--device cpu`) every comparison is the CPU against itself: the CPU half, which
`tests/test_gpu_benchmark.py` runs. The script exits 1 when a comparison fails its tolerance.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from featdyn import costs
from featdyn.checkpoints import CheckpointStore
from featdyn.composite import composite_band, composite_engine
from featdyn.config import dataset_entry, load_config
from featdyn.data import DEBIAN_DATASET_DIRS, Arrays, fetch, pad_images, subsample, tensor_data
from featdyn.isotropy import perturbation_stats
from featdyn.models import build_model
from featdyn.separation import load_curve
from featdyn.sgd_noise import one_step_perturbations
from featdyn.train import Recipe, TrainSpec, train_run

DEPTH = 4
MODEL_SPEC = {"name": "resnet20", "sample_shape": [3, 32, 32], "classes": 10, "options": {}}
CROSS_ENTROPY_ATOL = 1e-4
PERTURBATION_RTOL = 1e-3
LOAD_CURVE_RTOL = 1e-4


def benchmark_data(n_train: int, n_test: int, seed: int = 0) -> Arrays:
    """Fashion-MNIST padded to 32×32 (grey, repeated to 3 channels) when Debian's files are present,
    else CIFAR-shaped images: a fixed template per class plus noise."""
    if Path(DEBIAN_DATASET_DIRS["fashion_mnist"]).is_dir():
        entry = dataset_entry("fashion_mnist", train_samples=n_train, test_samples=n_test, pad_to=32)
        with tempfile.TemporaryDirectory() as tmp:
            arrays = pad_images(subsample(fetch("fashion_mnist", entry, tmp), entry), entry["pad_to"])
        return replace(
            arrays,
            x_train=np.repeat(arrays.x_train, 3, axis=1),
            x_test=np.repeat(arrays.x_test, 3, axis=1),
            source="fashion_mnist (Debian), 3 channels",
        )
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (10, 3, 32, 32))
    y = rng.integers(0, 10, n_train + n_test)
    x = np.clip(templates[y] * 0.5 + rng.integers(0, 128, (len(y), 3, 32, 32)), 0, 255).astype(np.uint8)
    return Arrays(x[:n_train], y[:n_train], x[n_train:], y[n_train:], 10, "synthetic CIFAR-shaped")


def train_on(device: str, arrays: Arrays, epochs: int, folder: Path) -> tuple[CheckpointStore, float]:
    """ResNet-20 trained on `device`, a checkpoint per epoch; returns the store and img/s (best epoch)."""
    data = tensor_data(arrays, device)
    torch.manual_seed(0)
    model = build_model("resnet20", (3, 32, 32), 10).to(device)
    recipe = Recipe(lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=128, augment=True, crop_padding=4)
    times: list[float] = []
    last = [time.perf_counter()]

    def clock(epoch: int, _model: torch.nn.Module) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    train_run(
        model,
        data,
        TrainSpec(recipe, epochs, 1, 0),
        state_dir=folder / "state",
        out_path=folder / "checkpoints.h5",
        model_spec=MODEL_SPEC,
        labels={"train": arrays.y_train},
        provenance={"benchmark": "gpu.py"},
        on_epoch=clock,
        progress=False,
    )
    return CheckpointStore(folder / "checkpoints.h5"), len(arrays.y_train) / min(times)


def composite_on(device: str, store: CheckpointStore, x: torch.Tensor, y: torch.Tensor) -> tuple[Any, float]:
    """The full band at depth `DEPTH` on `device`; returns it and pair-samples/s."""
    engine = composite_engine(None, store, DEPTH, device=device, memory_budget_mb=4096)
    xd, yd = x.to(device), y.to(device)
    composite_band(engine, store.epochs[:2], xd[:64], yd[:64], None, [store.epochs[1]], 256)  # warm-up
    start = time.perf_counter()
    band = composite_band(engine, store.epochs, xd, yd, None, [store.epochs[-1]], 256)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return band, len(store.epochs) ** 2 * len(x) / seconds


def perturbations_on(device: str, store: CheckpointStore, arrays: Arrays, m: int) -> np.ndarray:
    """M one-step SGD perturbations of the last checkpoint's depth-`DEPTH` features on `device`."""
    data = tensor_data(arrays, device)
    model = store.model_at(store.epochs[-1], device)
    delta, _ = one_step_perturbations(
        model, DEPTH, data.x_train, data.y_train, data.x_test[:8], 0.1, 128, M=m, p_max=128
    )
    return np.asarray(delta, dtype=np.float64)


def load_curve_on(device: str, store: CheckpointStore, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    model = store.model_at(store.epochs[-1], device)
    return load_curve(model, x.to(device), y, 10, batch_size=512)["D"]


def measured_rate(store: CheckpointStore, train_img_s: float, pair_samples_s: float) -> costs.DeviceRate:
    """The device's rate in `featdyn.costs` units: training counts 3 forward passes per image (forward and
    backward) plus one evaluation, a composite pair-sample one forward pass."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        store.build_model().eval()(torch.zeros(1, 3, 32, 32))
    flops = counter.get_total_flops()
    return costs.DeviceRate(
        train_flops=4 * flops * train_img_s, eval_flops=flops * pair_samples_s, step_seconds=0
    )


def dense_matmul_flops(device: str, repeats: int = 5) -> float:
    """FLOP/s of one large fp32 matmul on the device (best of `repeats`): the ceiling of these models."""
    n = 8192 if device == "cuda" else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = math.inf
    for _ in range(repeats + 1):  # the first call warms up
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def extrapolate(preset: Path, rate: costs.DeviceRate) -> dict[str, float]:
    """Hours of the preset's ResNet-20 training runs and composite jobs at `rate`."""
    config = load_config(preset)
    resnets = [r for r, spec in config["runs"].items() if spec["model"] == "resnet20"]
    training = sum(costs.training_seconds(config, r, config["runs"][r]["epochs"], rate) for r in resnets)
    section = config["composite"]
    runs = resnets if section["runs"] is None else section["runs"]
    composite = sum(
        costs.composite_seconds(config, r, e, rate) * len(section["depths"])
        for r in runs
        for e in section["eval_sets"]
    )
    return {"training_h": training / 3600, "composite_h": composite / 3600}


def compare(device: str, args: argparse.Namespace) -> bool:
    arrays = benchmark_data(args.train, args.test)
    print(f"data: {arrays.source}, {len(arrays.y_train)} training / {len(arrays.y_test)} test images")
    with tempfile.TemporaryDirectory() as tmp:
        store, img_s = train_on(device, arrays, args.epochs, Path(tmp))
        print(f"training on {device}: {img_s:,.0f} img/s (best of {args.epochs} epochs)")
        test = tensor_data(arrays)
        x, y = test.x_test[: args.samples], test.y_test[: args.samples]
        here, rate_here = composite_on(device, store, x, y)
        cpu, rate_cpu = composite_on("cpu", store, x, y)
        same = [
            np.array_equal(getattr(here, k), getattr(cpu, k), equal_nan=True)
            for k in ("accuracy", "agreement")
        ]
        defined = ~np.isnan(cpu.sample_consistency)  # NaN: offsets outside the band
        per_sample = float(np.mean(here.sample_consistency[defined] == cpu.sample_consistency[defined]))
        ce = float(np.nanmax(np.abs(here.cross_entropy - cpu.cross_entropy)))
        print(
            f"composite, depth {DEPTH}, {len(store.epochs)}² pairs × {len(x)} samples: {device} "
            f"{rate_here:,.0f} pair-samples/s, cpu {rate_cpu:,.0f}; accuracy and agreement identical: "
            f"{all(same)}, per-sample consistency equal: {per_sample:.4f}, largest |ΔCE| {ce:.2e}"
        )
        delta_here = perturbations_on(device, store, arrays, args.M)
        delta_cpu = perturbations_on("cpu", store, arrays, args.M)
        rel = float(np.linalg.norm(delta_here - delta_cpu) / np.linalg.norm(delta_cpu))
        ranks = [perturbation_stats(d)["effective_rank"] for d in (delta_here, delta_cpu)]
        print(
            f"isotropy step, M = {args.M}: relative |Δ{device} − Δcpu| {rel:.2e}, "
            f"effective rank {ranks[0]:.3f} vs {ranks[1]:.3f}"
        )
        d_here, d_cpu = load_curve_on(device, store, x, y), load_curve_on("cpu", store, x, y)
        load_rel = float(np.max(np.abs(d_here - d_cpu) / np.abs(d_cpu)))
        print(f"separation load curve D: largest relative difference {load_rel:.2e}")
        rate = measured_rate(store, img_s, rate_here)
        ceiling = dense_matmul_flops(device)
        print(
            f"against a dense fp32 matmul on {device} ({ceiling / 1e12:.2f} TFLOP/s): training "
            f"{rate.train_flops / ceiling:.1%}, composite {rate.eval_flops / ceiling:.1%} (an upper bound: "
            "a pair-sample counted as a whole forward pass, as featdyn.costs does)"
        )
        hours = extrapolate(args.full_preset, rate)
        print(
            f"{args.full_preset} at these rates on {device}: ResNet-20 training {hours['training_h']:.1f} h, "
            f"composite jobs {hours['composite_h']:.1f} h"
        )
    ok = all(same) and per_sample == 1.0 and ce <= CROSS_ENTROPY_ATOL
    ok = ok and rel <= PERTURBATION_RTOL and load_rel <= LOAD_CURVE_RTOL and math.isfinite(img_s)
    print("all comparisons within tolerance" if ok else "a comparison is outside its tolerance")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train", type=int, default=4096, help="training images")
    parser.add_argument("--test", type=int, default=1024, help="test images")
    parser.add_argument("--samples", type=int, default=512, help="samples of the composite and separation")
    parser.add_argument("--M", type=int, default=64, help="one-step perturbations of the isotropy step")
    parser.add_argument("--full-preset", type=Path, default=Path("configs/fmnist-full.yaml"))
    args = parser.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}, torch {torch.__version__}")
    return 0 if compare(device, args) else 1


if __name__ == "__main__":
    raise SystemExit(main())
