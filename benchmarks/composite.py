"""Composite engine against the literal definitions, a plain per-pair loop and the hardware's limit.

    python benchmarks/composite.py [--quick] [--threads 1] [--samples 64 512] [--repeats 3]
    python benchmarks/composite.py --memory-only --budget-mb 64     # the memory table under another budget

ResNet-20 (32×32 inputs, split depth 4) trained briefly on random CIFAR-shaped data gives real
checkpoints (BatchNorm statistics included). For each sample count, in one process and alternating
`--repeats` times (best of the repeats is printed), on the full (s, t) matrix of `--pair-epochs`
checkpoints:

- engine: `composite_band` on `composite_engine(...)` (defaults: loop strategy on CPU, channels_last
  for image models), batch `--batch-size` (default: all samples);
- limit: one eager forward of the deep part per pair plus one of the shallow part per epoch, with
  modules built beforehand, the same batch, memory format and precision — what the hardware allows;
- plain loop: one full composite `g^(t)(h^(s)(x))` per pair with modules built beforehand;
- literal: `naive_reference` (fresh modules per pair, consistency by its own loop over τ), timed on
  `--literal-columns` deep epochs t and extrapolated to every pair (its cost per pair grows with |s − t|,
  so the columns are spread over the matrix); its values are compared on those columns.

The engine's fp32 results are checked against the literal reference in the engine's memory format
(predictions exactly, cross-entropy to float rounding) and against the contiguous format; the bf16
variant is timed against the bf16 limit and its predictions compared with fp32. Then peak memory
(resident set of a fresh process above its size before the band) is measured for 21, 81 and 201
checkpoints of ResNet-20 read from HDF5 under `--budget-mb` (depth 4, band `--memory-window`,
`--memory-samples` samples); weights of every checkpoint together would take 1 MB each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from featdyn.checkpoints import CheckpointStore
from featdyn.composite import composite_band, composite_engine, naive_reference
from featdyn.data import Arrays, tensor_data
from featdyn.models import Staged, build_model
from featdyn.train import Recipe, TrainSpec, train_run

MODEL_SPEC = {"name": "resnet20", "sample_shape": [3, 32, 32], "classes": 10, "options": {}}


def trained_store(folder: Path, checkpoints: int, seed: int = 0) -> tuple[CheckpointStore, Arrays]:
    """ResNet-20 trained for `checkpoints - 1` epochs on 256 random images (checkpoint every epoch)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (1024, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, 1024)
    arrays = Arrays(x[:256], y[:256], x[256:], y[256:], 10, "random")
    data = tensor_data(arrays)
    torch.manual_seed(seed)
    model = build_model("resnet20", (3, 32, 32), 10)
    spec = TrainSpec(Recipe(lr=0.05, batch_size=64, augment=True), checkpoints - 1, 1, seed)
    small = tensor_data(Arrays(x[:256], y[:256], x[256:320], y[256:320], 10, "random"))
    train_run(
        model,
        small,
        spec,
        state_dir=folder / "state",
        out_path=folder / "trained.h5",
        model_spec=MODEL_SPEC,
        labels={},
        provenance={},
        progress=False,
    )
    return CheckpointStore(folder / "trained.h5"), data


def synthetic_store(path: Path, base: CheckpointStore, checkpoints: int, seed: int = 0) -> CheckpointStore:
    """A store of `checkpoints` epochs: the trained final weights plus a seeded random walk."""
    final = base.state_dict(base.epochs[-1])
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.attrs["model"] = json.dumps(MODEL_SPEC)
        f["epochs"] = np.arange(checkpoints)
        for name, value in final.items():
            value = value.numpy()
            if value.dtype.kind == "f" and value.ndim > 0 and "running_var" not in name:
                steps = rng.standard_normal((checkpoints, *value.shape)).astype(value.dtype)
                walk = value + 0.01 * np.cumsum(steps, axis=0) * value.std()
            else:
                walk = np.broadcast_to(value, (checkpoints, *value.shape))
            f.create_dataset(f"state/{name}", data=walk, chunks=(1, *value.shape) if value.ndim else None)
        g = f.create_group("metrics")
        g.attrs["columns"] = ["epoch"]
        g["epoch"] = np.arange(checkpoints)
        f.create_group("labels")
        f.create_group("optimizer_state")  # not read by the engine
    return CheckpointStore(path)


# --- the workloads ---------------------------------------------------------------------------------


def eager_models(store: CheckpointStore, channels_last: bool) -> list[Staged]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return [store.model_at(e).to(memory_format=fmt) for e in store.epochs]


def batches(x: torch.Tensor, batch: int) -> list[torch.Tensor]:
    return [x[i : i + batch] for i in range(0, len(x), batch)]


def autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.no_grad()
def limit(models: list[Staged], x: torch.Tensor, depth: int, batch: int, precision: str) -> torch.Tensor:
    """One shallow forward per epoch and one deep forward per pair; returns the predictions (s, t, N)."""
    n = len(models)
    preds = torch.empty(n, n, len(x), dtype=torch.long)
    with autocast(precision):
        for start, xb in zip(range(0, len(x), batch), batches(x, batch)):
            feats = [m(xb, 0, depth) for m in models]
            for t, deep in enumerate(models):
                for s, h in enumerate(feats):
                    preds[s, t, start : start + len(xb)] = deep(h, depth, None).argmax(-1)
    return preds


@torch.no_grad()
def plain_loop(models: list[Staged], x: torch.Tensor, y: torch.Tensor, depth: int, batch: int) -> None:
    """One full composite per pair: g^(t)(h^(s)(x)), its accuracy and cross-entropy."""
    for shallow in models:
        for deep in models:
            for xb, yb in zip(batches(x, batch), batches(y, batch)):
                logits = deep(shallow(xb, 0, depth), depth, None)
                (logits.argmax(1) == yb).sum().item(), F.cross_entropy(logits, yb).item()


def best_of(
    repeats: int, runs: dict[str, Callable[[], object]]
) -> tuple[dict[str, float], dict[str, object]]:
    """Best wall time of each run over `repeats` rounds, the runs alternating within each round."""
    times = {name: float("inf") for name in runs}
    outputs: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            outputs[name] = fn()
            times[name] = min(times[name], time.perf_counter() - start)
    return times, outputs


# --- memory --------------------------------------------------------------------------------------


def resident_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Reset this process's peak resident set (VmHWM) to its current size (Linux)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def memory_child(path: str, samples: int, budget_mb: float, window: int) -> None:
    """(In a fresh process) run the engine on a store and print its peak resident MB as JSON."""
    store = CheckpointStore(path)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(samples, 3, 32, 32, generator=g), torch.randint(0, 10, (samples,), generator=g)
    warm_up = composite_engine(None, store, MEMORY_DEPTH, epochs=store.epochs[:2], memory_budget_mb=budget_mb)
    composite_band(warm_up, store.epochs[:2], x, y, window, [], 256)  # imports, kernels, allocator pools
    del warm_up
    engine = composite_engine(None, store, MEMORY_DEPTH, memory_budget_mb=budget_mb)
    reset_peak()
    before = resident_mb("VmRSS")
    start = time.perf_counter()
    composite_band(engine, store.epochs, x, y, window, [store.epochs[-1]], 256)
    seconds = time.perf_counter() - start
    peak = resident_mb("VmHWM") - before
    print(json.dumps({"peak_mb": peak, "seconds": seconds, "weight_reads": engine.weight_reads}))


MEMORY_DEPTH = 4


# --- report ----------------------------------------------------------------------------------------


def max_difference(result, reference: dict[str, np.ndarray], columns: list[int]) -> dict[str, float]:
    return {
        name: float(np.nanmax(np.abs(getattr(result, name)[:, columns] - reference[name][:, columns])))
        for name in ("accuracy", "agreement", "consistency", "cross_entropy")
    }


def identical(diff: dict[str, float]) -> bool:
    """Predictions exactly equal (accuracy, agreement), means of them and cross-entropy to rounding."""
    exact = diff["accuracy"] == 0 and diff["agreement"] == 0
    return exact and diff["consistency"] < 1e-12 and diff["cross_entropy"] < 1e-5


def literal_composites(n_epochs: int, columns, window: int | None = None) -> int:
    """Composites `naive_reference` evaluates for the deep epochs `columns` of the band |s − t| ≤ window
    (None: the full matrix): per column one reference, per pair the pair itself and one per τ."""
    w = n_epochs - 1 if window is None else window
    return sum(1 + sum(2 + abs(s - t) for s in range(n_epochs) if abs(s - t) <= w) for t in columns)


def band_pairs(n_epochs: int, window: int) -> int:
    return sum(1 for s in range(n_epochs) for t in range(n_epochs) if abs(s - t) <= window)


ISSUE_BAND = (21, 10)
"""The configuration of the issue's table: 21 checkpoints, window 10 (331 pairs)."""


def measure(
    store: CheckpointStore,
    models: dict[bool, list[Staged]],
    x: torch.Tensor,
    y: torch.Tensor,
    columns: list[int],
    args: argparse.Namespace,
) -> tuple[dict[str, float], float, float, tuple]:
    """Rates (pair-samples/s) of every variant, the engine's peak MB, bf16 agreement and the checks."""
    depth, n_epochs, samples = args.depth, len(store.epochs), len(y)
    pairs, batch = n_epochs**2, min(len(y), args.batch_size or len(y))
    engines = {p: composite_engine(None, store, depth, p, memory_budget_mb=args.budget_mb) for p in PRECS}

    def run_engine(p: str):
        return composite_band(engines[p], store.epochs, x, y, None, [store.epochs[-1]], batch)

    reset_peak()
    rss_before = resident_mb("VmRSS")
    run_engine("fp32")
    peak = resident_mb("VmHWM") - rss_before
    times, out = best_of(
        args.repeats,
        {
            "engine": lambda: run_engine("fp32"),
            "limit": lambda: limit(models[True], x, depth, batch, "fp32"),
            "plain": lambda: plain_loop(models[False], x, y, depth, batch),
            "engine_bf16": lambda: run_engine("bf16"),
            "limit_bf16": lambda: limit(models[True], x, depth, batch, "bf16"),
        },
    )
    start = time.perf_counter()
    literal = naive_reference(store, depth, store.epochs, x, y, n_epochs - 1, True, columns)
    per_composite = (time.perf_counter() - start) / literal_composites(n_epochs, columns)
    literal_s = per_composite * literal_composites(n_epochs, range(n_epochs))
    contiguous = naive_reference(store, depth, store.epochs, x, y, n_epochs - 1, False, columns[-1:])
    rate = {name: pairs * samples / t for name, t in times.items()}
    rate["literal"] = pairs * samples / literal_s
    issue_epochs, issue_window = ISSUE_BAND
    issue_s = per_composite * literal_composites(issue_epochs, range(issue_epochs), issue_window)
    rate["literal_issue_band"] = band_pairs(issue_epochs, issue_window) * samples / issue_s
    agree = float((out["limit_bf16"] == out["limit"]).double().mean())
    check = (
        max_difference(out["engine"], literal, columns),
        max_difference(out["engine"], contiguous, columns[-1:]),
        out["engine_bf16"],
        out["engine"],
    )
    return rate, peak, agree, check


def speed_table(store: CheckpointStore, x_all: torch.Tensor, y_all: torch.Tensor, args) -> None:
    depth, n_epochs = args.depth, len(store.epochs)
    pairs = n_epochs**2
    spread = np.linspace(0, n_epochs - 1, args.literal_columns).round().astype(int)
    columns = sorted(set(spread.tolist()))
    literal_pairs = len(columns) * n_epochs
    models = {cl: eager_models(store, cl) for cl in (False, True)}
    print(
        f"\nResNet-20, depth {depth}, {n_epochs} checkpoints, full matrix: {pairs} pairs; "
        f"torch threads {torch.get_num_threads()}; best of {args.repeats}"
    )
    header = (
        f"{'samples':>7} {'batch':>5} | {'engine':>9} {'limit':>9} {'plain':>9} {'literal':>9} "
        f"| {'eng/limit':>9} {'eng/plain':>9} {'eng/literal':>11} | {'bf16 eng':>9} {'bf16 limit':>10} "
        f"{'bf16/limit':>10} {'bf16 agree':>10} | {'peak MB':>7}"
    )
    print("pair-samples/s (higher is better); ratios of rates")
    print(header)
    checks, issue_rates = [], []
    for samples in args.samples:
        rate, peak, agree, check = measure(store, models, x_all[:samples], y_all[:samples], columns, args)
        print(
            f"{samples:7d} {min(samples, args.batch_size or samples):5d} | "
            f"{rate['engine']:9,.0f} {rate['limit']:9,.0f} {rate['plain']:9,.0f} {rate['literal']:9,.0f} | "
            f"{rate['engine'] / rate['limit']:9.2f} "
            f"{rate['engine'] / rate['plain']:9.2f} {rate['engine'] / rate['literal']:11.1f} | "
            f"{rate['engine_bf16']:9,.0f} {rate['limit_bf16']:10,.0f} "
            f"{rate['engine_bf16'] / rate['limit_bf16']:10.2f} {agree:10.4f} | {peak:7.0f}"
        )
        checks.append((samples, *check))
        issue_rates.append((samples, rate))
    print(
        f"literal: timed on deep epochs t = {columns} ({literal_pairs} pairs), extrapolated to {pairs} "
        "pairs by the number of composites it evaluates; "
        "bf16 agree: share of pair-sample predictions of the bf16 limit equal to fp32"
    )
    print(
        f"literal at the issue's band ({ISSUE_BAND[0]} checkpoints, window {ISSUE_BAND[1]}, "
        f"{band_pairs(*ISSUE_BAND)} pairs; its τ loops grow with the window), from its time per composite: "
        + ", ".join(
            f"{samples} samples {r['literal_issue_band']:,.0f} pair-samples/s, engine/literal "
            f"{r['engine'] / r['literal_issue_band']:.1f}x"
            for samples, r in issue_rates
        )
    )
    for samples, same_format, other_format, bf16, fp32 in checks:
        print(
            f"{samples} samples: max |engine − literal| (channels_last, as the engine): "
            + ", ".join(f"{k} {v:.1e}" for k, v in same_format.items())
            + f" -> identical: {identical(same_format)}"
        )
        print(
            "    vs literal in contiguous format (t = last): "
            + ", ".join(f"{k} {v:.1e}" for k, v in other_format.items())
            + f"; bf16 engine max |Δ accuracy| vs fp32 {np.nanmax(np.abs(bf16.accuracy - fp32.accuracy)):.4f}"
        )
        if not identical(same_format):
            raise SystemExit("engine and literal reference disagree")


PRECS = ("fp32", "bf16")


def memory_table(store: CheckpointStore, folder: Path, args: argparse.Namespace) -> None:
    weights_mb = sum(v.numel() * v.element_size() for v in store.state_dict(0).values()) / 2**20
    print(
        f"\nPeak memory, ResNet-20 read from HDF5, depth {MEMORY_DEPTH}, window {args.memory_window}, "
        f"{args.memory_samples} samples, budget {args.budget_mb:.0f} MB; {weights_mb:.2f} MB of weights per "
        "checkpoint; one fresh process per row"
    )
    columns = ("checkpoints", "pairs", "seconds", "peak MB", "budget MB", "all weights MB")
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, (11, 7, 8, 8, 9, 14))))
    for n in args.memory_checkpoints:
        big = synthetic_store(folder / f"synthetic_{n}.h5", store, n)
        command = [sys.executable, __file__, "--memory-child", str(big.path), "--threads", str(args.threads)]
        command += ["--memory-samples", str(args.memory_samples), "--budget-mb", str(args.budget_mb)]
        command += ["--memory-window", str(args.memory_window)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        child = json.loads(done.stdout.strip().splitlines()[-1])
        w = min(args.memory_window, n - 1)
        pairs = n * (2 * w + 1) - w * (w + 1)
        print(
            f"{n:11d} {pairs:7d} {child['seconds']:8.1f} {child['peak_mb']:8.0f} {args.budget_mb:9.0f} "
            f"{n * weights_mb:14.0f}"
        )
    print("peak MB: resident set of the child above its size before the band (VmHWM after a reset)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a ≤ 30 s version (less of everything)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--pair-epochs", type=int, default=4, help="checkpoints of the speed table")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch-size", type=int, help="the engine's and limit's batch; default: the samples")
    parser.add_argument("--budget-mb", type=float, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--literal-columns", type=int, default=2)
    parser.add_argument("--memory-checkpoints", type=int, nargs="+", default=[21, 81, 201])
    parser.add_argument("--memory-samples", type=int, default=16)
    parser.add_argument("--memory-window", type=int, default=5)
    parser.add_argument("--memory-only", action="store_true", help="only the peak-memory table")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child, args.memory_samples, args.budget_mb, args.memory_window)
        return
    if args.quick:
        args.samples, args.pair_epochs, args.repeats, args.literal_columns = [32, 128], 3, 1, 1
        args.memory_checkpoints, args.memory_samples, args.memory_window = [21, 81], 16, 2
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        store, data = trained_store(Path(tmp), args.pair_epochs)
        print(f"trained ResNet-20 for {args.pair_epochs - 1} epochs in {time.perf_counter() - start:.0f} s")
        if not args.memory_only:
            speed_table(store, data.x_test, data.y_test, args)
        memory_table(store, Path(tmp), args)


if __name__ == "__main__":
    main()
