"""Depth-wise interventions from a run's checkpoints (docs/definitions.md §7; paper 1, App. F).

- Freezing: continuations from the checkpoint at epoch k with stages ≤ d frozen (d = 0: the unfrozen
  continuation, same data order and optimizer state, so it replays the original run).
- Re-initialisation: keep stages ≤ d of the final network (frozen), re-initialise the deeper stages and
  retrain; clean test accuracy and unnormalised mCE over the 15 benchmark corruptions × severities, the
  extra corruptions reported apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from featdyn.checkpoints import CheckpointStore
from featdyn.corruptions import CIFAR_C_BENCHMARK, CIFAR_C_EXTRA
from featdyn.data import Arrays, TensorData, corrupted_sets, normalize, read_corrupted_set, tensor_data
from featdyn.models import Staged
from featdyn.train import TrainSpec, evaluate, reinitialise_deep_stages, train_run


def run_tensors(store: CheckpointStore, arrays: Arrays, device: str = "cpu") -> TensorData:
    """The run's training tensors with the (possibly noisy) labels it was trained on."""
    return tensor_data(arrays, device, train_labels=store.labels["train"])


def require_trained(store: CheckpointStore) -> None:
    """Refuse a store imported from outside checkpoints: a continuation replays featdyn's own training
    (its optimizer state, data order, label noise and recipe), which an imported run does not have."""
    if store.imported_from is not None:
        raise ValueError(
            f"{store.path} was imported from {store.imported_from}: it has no optimizer state and no "
            "training featdyn can replay, so freezing and re-initialisation continuations cannot start "
            "from it (leave the run out of interventions.runs)"
        )


def continue_frozen(
    store: CheckpointStore,
    data: TensorData,
    spec: TrainSpec,
    from_epoch: int,
    frozen_depth: int,
    *,
    state_dir: str | Path,
    out_path: str | Path,
    provenance: Mapping[str, Any],
    device: str = "cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """Continue the run from its checkpoint at `from_epoch` to `spec.epochs` with stages ≤ d frozen.

    Weights, optimizer state and the per-epoch data order are those of the original run, so
    `frozen_depth = 0` replays it (bitwise on a CPU). Imported runs are refused (`require_trained`).
    """
    require_trained(store)
    model = store.build_model()
    model.load_state_dict(store.state_dict(from_epoch))
    continuation = dataclasses.replace(spec, start_epoch=from_epoch, frozen_depth=frozen_depth)
    return _train_from_store(
        store,
        model.to(device),
        data,
        continuation,
        state_dir,
        out_path,
        provenance,
        progress,
        optimizer_state=store.optimizer_state(from_epoch),
    )


def retrain_reinitialised(
    store: CheckpointStore,
    data: TensorData,
    spec: TrainSpec,
    kept_depth: int,
    epochs: int,
    init_seed: int,
    *,
    state_dir: str | Path,
    out_path: str | Path,
    provenance: Mapping[str, Any],
    device: str = "cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """Keep stages ≤ d of the final network (frozen), re-initialise the rest (seeded), retrain.
    Imported runs are refused (`require_trained`)."""
    require_trained(store)
    model = store.model_at(store.epochs[-1])
    torch.manual_seed(init_seed)
    reinitialise_deep_stages(model, store.build_model(), kept_depth)
    retrain = dataclasses.replace(
        spec, epochs=epochs, save_every=epochs, start_epoch=0, frozen_depth=kept_depth
    )
    return _train_from_store(
        store, model.to(device), data, retrain, state_dir, out_path, provenance, progress
    )


def _train_from_store(
    store: CheckpointStore,
    model: Staged,
    data: TensorData,
    spec: TrainSpec,
    state_dir: str | Path,
    out_path: str | Path,
    provenance: Mapping[str, Any],
    progress: bool,
    optimizer_state: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Train `model` with the run's model spec and labels (the one training loop, `train_run`)."""
    return train_run(
        model,
        data,
        spec,
        state_dir=state_dir,
        out_path=out_path,
        model_spec=store.model_spec,
        labels=store.labels,
        provenance=provenance,
        optimizer_state=optimizer_state,
        progress=progress,
    )


def final_network(path: str | Path, device: str = "cpu", expected: Mapping[str, Any] | None = None) -> Staged:
    """The last saved network of a checkpoint store (checked against `expected`), in eval mode."""
    store = CheckpointStore(path, expected)
    return store.model_at(store.epochs[-1], device)


CorruptedTensors = tuple[str, int, torch.Tensor, torch.Tensor]
"""(corruption, severity, normalised inputs, labels) of one corrupted test set, on the device."""


def load_corrupted_sets(
    path: str | Path, mean: torch.Tensor, std: torch.Tensor, device: str = "cpu"
) -> list[CorruptedTensors]:
    """Every corrupted test set of a `{dataset}-c.h5` file, normalised with the clean training statistics."""
    out = []
    for corruption, severity in corrupted_sets(path):
        raw_x, y = read_corrupted_set(path, corruption, severity)
        x = normalize(raw_x, mean, std).to(device)
        out.append((corruption, severity, x, torch.as_tensor(y, dtype=torch.long, device=device)))
    return out


def corruption_errors(
    model: Staged, sets: Iterable[CorruptedTensors], batch_size: int = 1024
) -> pd.DataFrame:
    """Error (%) of `model` on each corrupted set: columns corruption, severity, error."""
    rows = [
        {"corruption": c, "severity": s, "error": 100 * (1 - evaluate(model, x, y, batch_size)[1])}
        for c, s, x, y in sets
    ]
    return pd.DataFrame(rows, columns=["corruption", "severity", "error"])


def mean_corruption_error(errors: pd.DataFrame) -> float:
    """Unnormalised mCE: the mean error (%) over the benchmark corruptions (CIFAR-10-C's 15) and their
    severities; the extra corruptions are left out (see `extra_corruption_errors`)."""
    return float(errors.loc[errors["corruption"].isin(CIFAR_C_BENCHMARK), "error"].mean())


def extra_corruption_errors(errors: pd.DataFrame) -> dict[str, float]:
    """Mean error (%) over severities of each extra corruption present (speckle noise, Gaussian blur,
    spatter, saturate), keyed `error_<corruption>`: reported beside mCE, never inside it."""
    extras = errors[errors["corruption"].isin(CIFAR_C_EXTRA)]
    means = extras.groupby("corruption", sort=False)["error"].mean()
    return {f"error_{name}": float(value) for name, value in means.items()}


def robustness_row(
    model: Staged, data: TensorData, sets: Sequence[CorruptedTensors], batch_size: int = 1024
) -> tuple[dict[str, float], pd.DataFrame]:
    """Clean test accuracy (%) and mCE (%) of a network, and its per-set errors."""
    errors = corruption_errors(model, sets, batch_size)
    accuracy = 100 * evaluate(model, data.x_test, data.y_test, batch_size)[1]
    row = {
        "clean_accuracy": accuracy,
        "clean_error": 100 - accuracy,
        "mce": mean_corruption_error(errors),
        **extra_corruption_errors(errors),
    }
    return row, errors


def reinit_tables(
    run: str,
    baseline: Staged,
    retrained: Mapping[int, Staged],
    retrain_epochs: int,
    data: TensorData,
    sets: Sequence[CorruptedTensors],
    batch_size: int = 1024,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clean accuracy and mCE of the final network and of each re-initialised one (kept depth d → model).

    Returns the summary (one row per network) and the per-set errors.
    """
    networks = {"baseline": (baseline, baseline.n_stages, 0)}
    networks |= {f"reinit_d{d}": (model, d, retrain_epochs) for d, model in retrained.items()}
    summary, details = [], []
    for name, (model, kept, epochs) in networks.items():
        row, errors = robustness_row(model, data, sets, batch_size)
        summary.append({"run": run, "network": name, "kept_depth": kept, "retrain_epochs": epochs, **row})
        details.append(errors.assign(run=run, network=name))
    columns = ["run", "network", "corruption", "severity", "error"]
    return pd.DataFrame(summary), pd.concat(details, ignore_index=True)[columns]


def freeze_curves(
    original: pd.DataFrame,
    continuations: Mapping[int, pd.DataFrame],
    stage_labels: Mapping[int, str] | None = None,
) -> pd.DataFrame:
    """Tidy (network, epoch, test_acc) of the original run and its continuations by frozen depth d
    (named by `stage_labels`, e.g. `3 (block1.2)`, when given)."""
    frames = [original.assign(network="original")]
    for depth, metrics in sorted(continuations.items()):
        label = stage_labels[depth] if stage_labels and depth in stage_labels else depth
        name = "continued, nothing frozen" if depth == 0 else f"continued, stages ≤ {label} frozen"
        frames.append(metrics.assign(network=name))
    return pd.concat(frames, ignore_index=True)[["network", "epoch", "test_acc"]]
