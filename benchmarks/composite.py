"""Composite engine against the literal definitions, on ResNet-20 with 32×32 inputs.

    python benchmarks/composite.py [--epochs 21] [--window 10] [--samples 64] [--depth 4]

Trains a ResNet-20 briefly on random CIFAR-shaped data to get ≥ 20 real checkpoints (BatchNorm
statistics included), then times `composite_band` (vmapped shallow/deep parts, consistency by
cumulative sums) and `naive_reference` (fresh modules per pair, consistency by its own loop over τ)
in the same process, checks they agree, and prints the speed ratio, the engine's pair-samples per
second, its peak memory, and the bf16-autocast variant's speed and agreement with fp32.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from featdyn.checkpoints import CheckpointStore
from featdyn.composite import CompositeEngine, composite_band, naive_reference
from featdyn.data import Arrays, tensor_data
from featdyn.models import build_model
from featdyn.train import Recipe, TrainSpec, train_run


def make_store(
    folder: Path, epochs: int, seed: int = 0
) -> tuple[CheckpointStore, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (256, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, 256)
    data = tensor_data(Arrays(x[:128], y[:128], x[128:], y[128:], 10, "random"))
    torch.manual_seed(seed)
    model = build_model("resnet20", (3, 32, 32), 10)
    spec = TrainSpec(Recipe(optimizer="sgd", lr=0.05, batch_size=64, augment=True), epochs - 1, 1, seed)
    model_spec = {"name": "resnet20", "sample_shape": [3, 32, 32], "classes": 10, "options": {}}
    train_run(
        model,
        data,
        spec,
        state_dir=folder / "state",
        out_path=folder / "c.h5",
        model_spec=model_spec,
        labels={},
        provenance={},
        progress=False,
    )
    return CheckpointStore(folder / "c.h5"), data.x_test, data.y_test


def consistency_equal(a, b) -> float:
    """Share of defined per-sample consistency values that two results agree on."""
    defined = np.isfinite(b.sample_consistency)
    return float(np.mean(a.sample_consistency[defined] == b.sample_consistency[defined]))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=21, help="number of checkpoints (≥ 20)")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"training ResNet-20 for {args.epochs - 1} epochs to get {args.epochs} checkpoints ...")
        store, x, y = make_store(Path(tmp), args.epochs)
        x, y = x[: args.samples], y[: args.samples]
        epochs = store.epochs
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        def engine(precision: str):
            eng = CompositeEngine(store.build_model(), store.stacked(epochs), args.depth, precision)
            return composite_band(
                eng, epochs, x, y, window=args.window, reference_epochs=[epochs[-1]], batch_size=args.samples
            )

        fast, t_engine = timed(lambda: engine("fp32"))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        bf16, t_bf16 = timed(lambda: engine("bf16"))
        naive, t_naive = timed(lambda: naive_reference(store, args.depth, epochs, x, y, args.window))

    pairs = int(np.isfinite(fast.accuracy).sum())
    same = {
        name: float(np.nanmax(np.abs(getattr(fast, name) - naive[name])))
        for name in ("accuracy", "agreement", "consistency", "cross_entropy")
    }
    identical = (
        all(same[n] < 1e-9 for n in ("accuracy", "agreement", "consistency")) and same["cross_entropy"] < 1e-4
    )
    print(
        f"ResNet-20, depth {args.depth}, {len(epochs)} checkpoints, window {args.window}: {pairs} pairs "
        f"× {len(y)} samples"
    )
    print("max |engine − naive|: " + ", ".join(f"{k} {v:.1e}" for k, v in same.items()))
    print(f"identical fp32 results (predictions exactly, cross-entropy to float32 rounding): {identical}")
    print(f"naive reference:  {t_naive:8.2f} s")
    print(f"engine (fp32):    {t_engine:8.2f} s   {pairs * len(y) / t_engine:,.0f} pair-samples/s")
    print(
        f"engine (bf16):    {t_bf16:8.2f} s   max |Δ accuracy| vs fp32 "
        f"{np.nanmax(np.abs(bf16.accuracy - fast.accuracy)):.4f}, "
        f"per-sample consistency equal for {consistency_equal(bf16, fast):.1%}"
    )
    print(f"engine peak RSS:  {peak:8.0f} MB (process before the engine: {rss_before:.0f} MB)")
    print(f"speed ratio (naive / engine fp32): {t_naive / t_engine:.1f}x")
    if not identical:
        raise SystemExit("engine and naive reference disagree")


if __name__ == "__main__":
    main()
