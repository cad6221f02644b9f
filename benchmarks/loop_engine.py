"""The composite engine's two strategies on the built-in ViT: vmap over stacked weights and the
per-checkpoint loop (what `auto` takes on CPUs, and elsewhere where vmap cannot batch a model).

    python benchmarks/loop_engine.py [--epochs 8] [--samples 256] [--depth 2] [--repeats 3]

Builds `--epochs` differently seeded ViTs (default size) for MNIST-1D-shaped signals (40,) and for
32×32 RGB images, runs `composite_band` over the full (s, t) matrix with `CompositeEngine` in strategy `vmap`
and `loop` (one `functional_call` per checkpoint), alternating the two `--repeats` times in the same
process, checks that both give the same predictions and prints the pair-samples per second of each
and their ratio (best of the repeats).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from featdyn.composite import CompositeEngine, composite_band
from featdyn.vit import vit


def stacked_vits(shape: tuple[int, ...], n: int) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    models = []
    for seed in range(n):
        torch.manual_seed(seed)
        models.append(vit(shape, 10))
    return models[0], {k: torch.stack([m.state_dict()[k] for m in models]) for k in models[0].state_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    for label, shape in (("signals (40,)", (40,)), ("images (3, 32, 32)", (3, 32, 32))):
        model, stacked = stacked_vits(shape, args.epochs)
        x = torch.randn(args.samples, *shape, generator=torch.Generator().manual_seed(0))
        y = torch.randint(0, 10, (args.samples,), generator=torch.Generator().manual_seed(1))
        epochs = list(range(args.epochs))
        times: dict[str, list[float]] = {"vmap": [], "loop": []}
        results = {}
        for _ in range(args.repeats):
            for name in ("vmap", "loop"):
                engine = CompositeEngine(model, stacked, args.depth, strategy=name)
                start = time.perf_counter()
                results[name] = composite_band(
                    engine, epochs, x, y, None, [epochs[-1]], batch_size=args.samples
                )
                times[name].append(time.perf_counter() - start)
        identical = all(
            np.array_equal(getattr(results["vmap"], k), getattr(results["loop"], k), equal_nan=True)
            for k in ("accuracy", "agreement", "consistency", "sample_consistency")
        )
        pair_samples = args.epochs**2 * args.samples
        rate = {k: pair_samples / min(v) for k, v in times.items()}
        print(
            f"ViT on {label}, depth {args.depth}, {args.epochs} checkpoints (full matrix), "
            f"{args.samples} samples: "
            f"vmap {rate['vmap']:,.0f} pair-samples/s, loop {rate['loop']:,.0f} pair-samples/s, "
            f"vmap/loop {rate['vmap'] / rate['loop']:.2f}, same predictions: {identical}"
        )


if __name__ == "__main__":
    main()
