"""Temporal ensembles (SPEC.md §13).

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
means over τ going back from t.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch.optim.swa_utils import update_bn

from featdyn.checkpoints import CheckpointStore
from featdyn.composite import CompositeEngine
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
    engine: CompositeEngine, x: torch.Tensor, counts: Sequence[int], batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """Composite and checkpoint ensembles (len(counts), n, C) and softmax f^(t) (n, C), float64.

    The engine holds the epochs of the largest window, ascending, the reference epoch t last; entry i
    of an ensemble averages over the last counts[i] epochs.
    """
    last = engine.n_epochs - 1
    out: dict[str, list[torch.Tensor]] = {"composite": [], "checkpoint": [], "single": []}
    for start in range(0, len(x), batch_size):
        features = engine.shallow(x[start : start + batch_size])
        n_epochs, b = features.shape[:2]
        own = engine.deep(features, slice(None)).to(DTYPE).softmax(-1)  # f^(τ)(x)
        deep_t = engine.deep(features.reshape(1, n_epochs * b, *features.shape[2:]), slice(last, last + 1))
        mixed = deep_t.to(DTYPE).softmax(-1).view(n_epochs, b, -1)  # g^(t)(h^(τ)(x))
        out["composite"].append(cumulative_window_means(mixed, counts))
        out["checkpoint"].append(cumulative_window_means(own, counts))
        out["single"].append(own[last])
    return {
        "composite": torch.cat(out["composite"], dim=1),
        "checkpoint": torch.cat(out["checkpoint"], dim=1),
        "single": torch.cat(out["single"]),
    }


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


def ensemble_table(
    store: CheckpointStore,
    depth: int,
    t: int,
    windows: Sequence[int],
    x: torch.Tensor,
    y: torch.Tensor,
    x_train: torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy, cross-entropy and ECE of every method (`METHODS`) on (x, y) for each window W.

    Columns: depth, epoch, window, n_epochs (saved epochs in the window), method, accuracy,
    cross_entropy, ece. `single` (f^(t)) is repeated for every W as the reference line; BatchNorm of the
    weight average is recomputed on `x_train` (the caller's choice of training inputs or a subset).
    """
    windows = sorted(windows)
    epochs = window_epochs(store.epochs, t, windows[-1])
    counts = window_counts(epochs, t, windows)
    stacked = {k: v.to(device) for k, v in store.stacked(epochs).items()}
    engine = CompositeEngine(store.build_model().to(device), stacked, depth, precision)
    x, y = x.to(device), y.to(device)
    probs = prediction_ensembles(engine, x, counts, batch_size)
    single = probability_metrics(probs["single"], y)
    rows = []
    for i, (window, count) in enumerate(zip(windows, counts)):
        base = {"depth": depth, "epoch": t, "window": window, "n_epochs": count}
        averaged = weight_average_model(
            store, epochs[len(epochs) - count :], x_train, batch_size, device, seed
        )
        measured = {
            "single": single,
            "composite": probability_metrics(probs["composite"][i], y),
            "checkpoint": probability_metrics(probs["checkpoint"][i], y),
            "weight_average": probability_metrics(model_probabilities(averaged, x, batch_size), y),
        }
        rows += [{**base, "method": method, **measured[method]} for method in METHODS]
    return pd.DataFrame(rows)
