"""Temporal ensembles (docs/definitions.md §13).

For a reference epoch t and a window W (saved epochs τ in [t − W, t]) on given evaluation inputs:

* `single`: softmax f^(t)(x);
* `composite`: mean over τ of softmax g^(t)(h^(τ)(x)) at split depth d;
* `checkpoint`: mean over τ of softmax f^(τ)(x);
* `weight_average`: f with the parameters averaged over τ and BatchNorm statistics recomputed on
  training inputs by `torch.optim.swa_utils.update_bn` (train mode, cumulative average over the
  batches, each batch counting equally).

Metrics of the (mean) probabilities p̄: accuracy of argmax p̄, cross-entropy −mean log p̄_y, and the
expected calibration error over 15 equal-width confidence bins ((i − 1)/15, i/15].

The shallow features of all epochs come from one vmapped call (`CompositeEngine`); the deep part of t
runs once on the features of all τ together (eval-mode BatchNorm is per sample), the deep parts of
all τ on their own features (the checkpoint ensemble); the ensembles of every window are cumulative
means over τ going back from t. The weight average of each window is built once and evaluated on
every evaluation set.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch.optim.swa_utils import update_bn

from featdyn.checkpoints import CheckpointStore
from featdyn.composite import CompositeEngine
from featdyn.data import Arrays, evaluation_set, tensor_data, training_subset
from featdyn.models import Staged
from featdyn.surrogates import window_epochs

DTYPE = torch.float64
ECE_BINS = 15
METHODS = ("single", "composite", "checkpoint", "weight_average")


# --- metrics -----------------------------------------------------------------------------------------


def expected_calibration_error(probs: torch.Tensor, y: torch.Tensor, n_bins: int = ECE_BINS) -> float:
    """Σ_b (n_b / N) |acc_b − conf_b| over equal-width confidence bins ((b − 1)/n_bins, b/n_bins]."""
    confidence, predicted = probs.max(1)
    edges = torch.arange(1, n_bins, dtype=probs.dtype, device=probs.device) / n_bins
    bins = torch.bucketize(confidence, edges, right=False)
    correct = (predicted == y.to(probs.device)).to(probs.dtype)
    gap = torch.zeros(n_bins, dtype=probs.dtype, device=probs.device)
    gap.index_add_(0, bins, correct - confidence)
    return float(gap.abs().sum() / len(y))


def probability_metrics(probs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Accuracy, cross-entropy of the given probabilities and ECE (15 bins)."""
    y = y.to(probs.device)
    tiny = torch.finfo(probs.dtype).tiny
    return {
        "accuracy": float((probs.argmax(1) == y).to(probs.dtype).mean()),
        "cross_entropy": float(-probs.gather(1, y[:, None]).clamp_min(tiny).log().mean()),
        "ece": expected_calibration_error(probs, y),
    }


# --- prediction ensembles --------------------------------------------------------------------------


def window_counts(epochs: Sequence[int], t: int, windows: Sequence[int]) -> list[int]:
    """Number of saved epochs in [t − W, t] for each window W."""
    return [len(window_epochs(epochs, t, w)) for w in windows]


def cumulative_window_means(probs: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """probs (E, n, C) over ascending epochs ending at t → (len(counts), n, C): mean of the last c."""
    running = probs.flip(0).cumsum(0)
    index = torch.as_tensor([c - 1 for c in counts], device=probs.device)
    return running[index] / torch.as_tensor(counts, dtype=probs.dtype, device=probs.device)[:, None, None]


@torch.no_grad()
def prediction_ensembles(
    engine: CompositeEngine,
    x: torch.Tensor,
    counts: Sequence[int],
    batch_size: int = 256,
    checkpoint: bool = True,
) -> dict[str, torch.Tensor]:
    """Composite (and, with `checkpoint`, checkpoint) ensembles (len(counts), n, C) and softmax f^(t)
    (n, C), float64.

    The engine holds the epochs of the largest window, ascending, the reference epoch t last; entry i
    of an ensemble averages over the last counts[i] epochs. f^(t) = g^(t)(h^(t)) is the composite term
    of τ = t.
    """
    last = engine.n_epochs - 1
    out: dict[str, list[torch.Tensor]] = {"composite": [], "checkpoint": [], "single": []}
    for start in range(0, len(x), batch_size):
        features = engine.shallow(x[start : start + batch_size])
        n_epochs, b = features.shape[:2]
        deep_t = engine.deep(features.reshape(1, n_epochs * b, *features.shape[2:]), slice(last, last + 1))
        mixed = deep_t.to(DTYPE).softmax(-1).view(n_epochs, b, -1)  # g^(t)(h^(τ)(x))
        out["composite"].append(cumulative_window_means(mixed, counts))
        out["single"].append(mixed[last])
        if checkpoint:
            own = engine.deep(features, slice(None)).to(DTYPE).softmax(-1)  # f^(τ)(x)
            out["checkpoint"].append(cumulative_window_means(own, counts))
    return {name: torch.cat(parts, dim=1 if name != "single" else 0) for name, parts in out.items() if parts}


# --- weight average --------------------------------------------------------------------------------


def average_state(stacked: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean over the leading epoch axis of every floating-point entry; integer entries (BatchNorm step
    counters) from the last epoch. Running statistics are averaged too, but are meant to be recomputed."""
    return {
        name: value.mean(0) if value.is_floating_point() else value[-1] for name, value in stacked.items()
    }


@torch.no_grad()
def recompute_batchnorm(model: Staged, x_train: torch.Tensor, batch_size: int = 256, seed: int = 0) -> Staged:
    """BatchNorm running statistics of `model` recomputed on `x_train` by `update_bn`, in its order and
    batches of `batch_size` (dropout seeded by `seed`, global RNG restored); returns the model in eval
    mode. A model without BatchNorm is left as it is."""
    device = next(model.parameters()).device
    batches = [x_train[start : start + batch_size].to(device) for start in range(0, len(x_train), batch_size)]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        update_bn(batches, model)
    return model.eval()


def weight_average_model(
    store: CheckpointStore,
    epochs: Sequence[int],
    x_train: torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Staged:
    """The run's model with parameters averaged over `epochs` and BatchNorm recomputed on `x_train`."""
    model = store.build_model()
    model.load_state_dict(average_state(store.stacked(epochs)))
    return recompute_batchnorm(model.to(device), x_train, batch_size, seed)


@torch.no_grad()
def model_probabilities(model: Staged, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """softmax model(x) in eval mode, float64 (n, C)."""
    model.eval()
    return torch.cat(
        [model(x[start : start + batch_size]).to(DTYPE).softmax(-1) for start in range(0, len(x), batch_size)]
    )


# --- the table ---------------------------------------------------------------------------------------

TABLE_COLUMNS = [
    "eval_set",
    "epoch",
    "window",
    "n_epochs",
    "method",
    "depth",
    "accuracy",
    "cross_entropy",
    "ece",
]


def ensemble_table(
    store: CheckpointStore,
    depths: Sequence[int],
    t: int,
    windows: Sequence[int],
    eval_sets: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    x_train: torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy, cross-entropy and ECE of every method (`METHODS`) on each evaluation set for each W.

    Columns `TABLE_COLUMNS`; `depth` is the split depth of a `composite` row and 0 for the methods that
    do not split the network. `single` (f^(t)) is repeated for every W as the reference line; the
    weight average of each window is built once (BatchNorm recomputed on `x_train`, the caller's choice
    of training inputs) and evaluated on every set.
    """
    windows = sorted(windows)
    epochs = window_epochs(store.epochs, t, windows[-1])
    counts = window_counts(epochs, t, windows)
    stacked = {k: v.to(device) for k, v in store.stacked(epochs).items()}
    engines = [CompositeEngine(store.build_model().to(device), stacked, d, precision) for d in depths]
    averaged = [
        weight_average_model(store, epochs[len(epochs) - count :], x_train, batch_size, device, seed)
        for count in counts
    ]
    rows = []
    for name, (x, y) in eval_sets.items():
        x, y = x.to(device), y.to(device)
        per_depth = [
            prediction_ensembles(engine, x, counts, batch_size, checkpoint=i == 0)
            for i, engine in enumerate(engines)
        ]
        single = probability_metrics(per_depth[0]["single"], y)
        for i, (window, count) in enumerate(zip(windows, counts)):
            base = {"eval_set": name, "epoch": t, "window": window, "n_epochs": count}
            measured = [
                ("single", 0, single),
                *[
                    ("composite", d, probability_metrics(probs["composite"][i], y))
                    for d, probs in zip(depths, per_depth)
                ],
                ("checkpoint", 0, probability_metrics(per_depth[0]["checkpoint"][i], y)),
                (
                    "weight_average",
                    0,
                    probability_metrics(model_probabilities(averaged[i], x, batch_size), y),
                ),
            ]
            rows += [{**base, "method": m, "depth": d, **metrics} for m, d, metrics in measured]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


@dataclass(frozen=True)
class EnsembleSettings:
    """The keys of config section `ensembles` one run's job reads; defaults are the schema's."""

    depths: tuple[int, ...] = (1, 2, 3)
    windows: tuple[int, ...] = (0, 1, 2, 4, 8, 16)
    bn_train_subset: int | None = None
    batch_size: int = 512
    precision: str = "fp32"
    seed: int = 0


def ensemble_stage(
    store: CheckpointStore,
    arrays: Arrays,
    t: int,
    eval_sets: Sequence[str],
    settings: EnsembleSettings,
    corrupted_path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """The pipeline stage: `ensemble_table` of one run at reference epoch t on the named evaluation sets
    (`test`, `<corruption>-<severity>`: true labels), BatchNorm of the weight averages recomputed on a
    seeded subset of `bn_train_subset` training inputs (all when null); `seconds` holds the job's time."""
    start = time.perf_counter()
    data = tensor_data(arrays, device)
    sets = {
        name: evaluation_set(data, arrays, name, None, settings.seed, corrupted_path) for name in eval_sets
    }
    _, x_train = training_subset(data, settings.bn_train_subset, settings.seed)
    table = ensemble_table(
        store,
        settings.depths,
        t,
        settings.windows,
        sets,
        x_train,
        settings.batch_size,
        device,
        settings.precision,
        settings.seed,
    )
    table["seconds"] = time.perf_counter() - start
    return table
