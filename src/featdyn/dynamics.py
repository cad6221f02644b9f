"""Feature dynamics (docs/definitions.md §5-6; paper 1, Sec. 4.2, 4.5, App. B).

- Trajectories (Fig. 6): the 2-D feature h^(t)(x) of a bottleneck network for every saved epoch t,
  beside the classification regions of the final network's deep part g^(T) on a grid of the plane.
- PCA perturbation (Fig. 14): features h^(τ)(x) of epochs τ ∈ [T − history, T] plus uniform noise
  a·(u₁ v₁ + u₂ v₂), u ~ U[−1, 1]², along the top-2 principal directions v₁, v₂ of the epoch-T features,
  classified by g^(T); agreement with f^(T)(x) against a. The same unit draws u serve every a.
- Drift (Fig. 11): `||θ_t − θ_T|| / ||θ_T||` per stage (trainable parameters only) and
  `mean_x ||h^(t)(x) − h^(T)(x)|| / ||h^(T)(x)||` per depth, T the last saved epoch.

Features of many epochs come from the composite engine (`featdyn.composite`), which reads the
checkpoints' weights in blocks; drift holds only a chunk of epochs at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from featdyn.batching import chunk_slices
from featdyn.checkpoints import CheckpointStore
from featdyn.composite import FEATURES_SHARE, CompositeEngine, composite_engine
from featdyn.dynamics_results import Drift, PCAPerturbation, RegionGrid, Trajectories
from featdyn.dynamics_results import drift_frames as drift_frames
from featdyn.dynamics_results import read_drift as read_drift
from featdyn.dynamics_results import read_pca_perturbation as read_pca_perturbation
from featdyn.dynamics_results import read_trajectories as read_trajectories
from featdyn.dynamics_results import write_drift as write_drift
from featdyn.dynamics_results import write_pca_perturbation as write_pca_perturbation
from featdyn.dynamics_results import write_trajectories as write_trajectories
from featdyn.models import Staged

# The results and their files are re-exported: figure jobs import them from featdyn.dynamics_results.

Deep = Callable[[torch.Tensor], torch.Tensor]
Limits = tuple[tuple[float, float], tuple[float, float]]


# --- features of many epochs ---------------------------------------------------------------------


def feature_engine(
    store: CheckpointStore, epochs: Sequence[int], depth: int, device: str, memory_budget_mb: float = 512
) -> CompositeEngine:
    """The composite engine over `epochs` of a store, reading their weights in blocks."""
    return composite_engine(
        None, store, depth, epochs=epochs, device=device, memory_budget_mb=memory_budget_mb
    )


def features_over_epochs(engine: CompositeEngine, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """h^(t)(x) for every epoch of the engine: (n_epochs, N, *feature_shape)."""
    return torch.cat([engine.shallow(x[rows]) for rows in chunk_slices(len(x), batch_size)], dim=1)


def deep_part(model: Staged, depth: int) -> Deep:
    """g = f_K ∘ … ∘ f_{d+1} of `model` (in eval mode), as a function of features."""
    model.eval()
    return lambda h: model(h, depth, None)


@torch.no_grad()
def predict(deep: Deep, features: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """argmax of `deep` on a batch of features, in chunks."""
    return torch.cat([deep(features[rows]).argmax(-1) for rows in chunk_slices(len(features), batch_size)])


# --- classification regions on a plane -----------------------------------------------------------


def plane_limits(coords: np.ndarray, quantile: float = 0.005, margin: float = 0.1) -> Limits:
    """Axis limits covering the [q, 1 − q] quantiles of the points `coords` (..., 2), plus a margin."""
    flat = coords.reshape(-1, 2)
    lo, hi = np.quantile(flat, [quantile, 1 - quantile], axis=0)
    pad = margin * np.maximum(hi - lo, 1e-6)
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0])), (float(lo[1] - pad[1]), float(hi[1] + pad[1]))


@torch.no_grad()
def region_grid(
    deep: Deep,
    origin: torch.Tensor,
    directions: torch.Tensor,
    limits: Limits,
    resolution: int,
    batch_size: int = 4096,
) -> RegionGrid:
    """Classes of `deep` on the plane `origin + c₁ d₁ + c₂ d₂` over a resolution² grid of (c₁, c₂).

    `origin` has the feature shape, `directions` is (2, *feature shape); all grid points are
    classified in batches.
    """
    (x0, x1), (y0, y1) = limits
    xs = torch.linspace(x0, x1, resolution, dtype=torch.float64)
    ys = torch.linspace(y0, y1, resolution, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([gx.flatten(), gy.flatten()], dim=1).to(origin)
    points = origin.flatten() + coords @ directions.flatten(1)
    classes = predict(deep, points.view(-1, *origin.shape), batch_size)
    return RegionGrid(xs.numpy(), ys.numpy(), classes.view(resolution, resolution).cpu().numpy())


# --- trajectories of 2-D features (Fig. 6) --------------------------------------------------------


def compute_trajectories(
    store: CheckpointStore,
    x: torch.Tensor,
    labels: np.ndarray,
    sample_index: np.ndarray,
    depth: int,
    resolution: int,
    quantile: float = 0.005,
    margin: float = 0.1,
    batch_size: int = 512,
    device: str = "cpu",
) -> Trajectories:
    """2-D features of every saved epoch and the final network's regions on the plane they span."""
    engine = feature_engine(store, store.epochs, depth, device)
    features = features_over_epochs(engine, x.to(device), batch_size)
    if features[0, 0].numel() != 2:
        raise ValueError(
            f"the feature at depth {depth} of model {store.model_spec['name']!r} has shape "
            f"{tuple(features.shape[2:])}, not 2 values: trajectories need a 2-D bottleneck"
        )
    features = features.flatten(2)
    final = store.model_at(store.epochs[-1], device)
    deep = deep_part(final, depth)
    coords = features.cpu().numpy()
    limits = plane_limits(coords, quantile, margin)
    eye = torch.eye(2, device=device)
    return Trajectories(
        epochs=np.asarray(store.epochs),
        features=coords,
        labels=np.asarray(labels),
        sample_index=np.asarray(sample_index),
        final_prediction=predict(deep, features[-1], batch_size).cpu().numpy(),
        regions=region_grid(deep, torch.zeros(2, device=device), eye, limits, resolution, batch_size),
        depth=depth,
    )


# --- PCA perturbation (Fig. 14) ------------------------------------------------------------------


def principal_directions(
    features: torch.Tensor, k: int = 2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, top-k principal directions (k, p) and the std along them of features (N, p).

    Signs are fixed so that each direction's largest-magnitude loading is positive.
    """
    mean = features.mean(0)
    _, singular, vh = torch.linalg.svd(features - mean, full_matrices=False)
    directions = vh[:k]
    signs = torch.sign(directions.gather(1, directions.abs().argmax(1, keepdim=True)))
    return mean, directions * signs, singular[:k] / max(len(features) - 1, 1) ** 0.5


def window_epochs(saved: Sequence[int], reference_epoch: int | None, history: int) -> list[int]:
    """Saved epochs in [T − history, T]; T defaults to the last saved epoch and must be saved."""
    t = saved[-1] if reference_epoch is None else int(reference_epoch)
    if t not in saved:
        raise KeyError(f"reference epoch {t} was not saved; saved: {list(saved)}")
    return [e for e in saved if t - history <= e <= t]


@torch.no_grad()
def perturbed_predictions(
    deep: Deep,
    features: torch.Tensor,
    directions: torch.Tensor,
    noise: torch.Tensor,
    batch_size: int = 4096,
) -> torch.Tensor:
    """argmax g(features + noise @ directions) for features (M, p), directions (2, p), noise (D, M, 2).

    Returns (D, M): one prediction per draw and feature.
    """
    draws, m, p = noise.shape[0], features.shape[0], features.shape[1]
    rows_per_chunk = max(1, batch_size // draws)
    out = torch.empty(draws, m, dtype=torch.long, device=features.device)
    for rows in chunk_slices(m, rows_per_chunk):
        points = features[rows][None] + noise[:, rows] @ directions
        out[:, rows] = predict(deep, points.reshape(-1, p), batch_size).view(draws, -1)
    return out


def pca_perturbation(
    store: CheckpointStore,
    x: torch.Tensor,
    labels: torch.Tensor,
    depth: int,
    magnitudes: Sequence[float],
    *,
    reference_epoch: int | None = None,
    history: int = 50,
    scale: str = "absolute",
    draws: int = 1,
    figure_magnitude: float = 1.0,
    resolution: int = 150,
    seed: int = 0,
    batch_size: int = 512,
    device: str = "cpu",
) -> PCAPerturbation:
    """Agreement of g^(T) on features of epochs T − history … T perturbed along their top-2 PCs."""
    if scale not in ("absolute", "pc_std"):
        raise ValueError(f"unknown noise scale {scale!r}; available: ['absolute', 'pc_std']")
    epochs = window_epochs(store.epochs, reference_epoch, history)
    engine = feature_engine(store, epochs, depth, device)
    x, labels = x.to(device), labels.to(device)
    features = features_over_epochs(engine, x, batch_size)
    feature_shape = features.shape[2:]
    features = features.flatten(2)  # (E, N, p)
    n_epochs, n = features.shape[:2]
    mean, directions, pc_std = principal_directions(features[-1])
    deep = deep_part(store.model_at(epochs[-1], device), depth)
    reference = predict(deep, features[-1].view(-1, *feature_shape), batch_size)
    unit = torch.rand(draws, n_epochs * n, 2, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    unit = unit.to(device) * (pc_std if scale == "pc_std" else torch.ones_like(pc_std))
    flat = features.reshape(n_epochs * n, -1)
    shaped = _reshaping(deep, feature_shape)
    agreement, accuracy = np.zeros((len(magnitudes), n_epochs)), np.zeros((len(magnitudes), n_epochs))
    for i, a in enumerate(magnitudes):
        pred = perturbed_predictions(shaped, flat, directions, a * unit, batch_size).view(draws, n_epochs, n)
        agreement[i] = (pred == reference).double().mean((0, 2)).cpu().numpy()
        accuracy[i] = (pred == labels).double().mean((0, 2)).cpu().numpy()
    figure_noise = figure_magnitude * unit[:1]
    coords = (features - mean) @ directions.T
    perturbed = coords + figure_noise.view(n_epochs, n, 2)
    figure_pred = perturbed_predictions(shaped, flat, directions, figure_noise, batch_size).view(n_epochs, n)
    limits = plane_limits(torch.cat([coords, perturbed]).cpu().numpy())
    return PCAPerturbation(
        epochs=np.asarray(epochs),
        magnitudes=np.asarray(magnitudes, dtype=np.float64),
        scale=scale,
        agreement=agreement,
        accuracy=accuracy,
        components=directions.cpu().numpy(),
        pc_std=pc_std.cpu().numpy(),
        mean=mean.cpu().numpy(),
        coords=coords.cpu().numpy(),
        figure_magnitude=float(figure_magnitude),
        perturbed_coords=perturbed.cpu().numpy(),
        perturbed_prediction=figure_pred.cpu().numpy(),
        reference_prediction=reference.cpu().numpy(),
        labels=labels.cpu().numpy(),
        regions=region_grid(
            deep, mean.view(feature_shape), directions.view(2, *feature_shape), limits, resolution, batch_size
        ),
        depth=depth,
    )


def _reshaping(deep: Deep, feature_shape: torch.Size) -> Deep:
    """`deep` applied to flattened features."""
    return lambda h: deep(h.view(-1, *feature_shape))


# --- drift (Fig. 11) -----------------------------------------------------------------------------


def stage_parameter_names(model: Staged) -> list[list[str]]:
    """Names of the trainable parameters of each stage, as in the model's state dict."""
    return [
        [f"stages.{i}.{name}" for name, _ in stage.named_parameters()] for i, stage in enumerate(model.stages)
    ]


def parameter_drift(
    store: CheckpointStore, epochs: Sequence[int], memory_budget_mb: float = 512
) -> np.ndarray:
    """(E, K): relative distance of each stage's parameters at every epoch to those at epochs[-1].

    The parameters are read a chunk of epochs at a time, as many as fit the budget in float64.
    """
    names = stage_parameter_names(store.build_model())
    flat = [n for stage in names for n in stage]
    final = {k: v[0].double() for k, v in store.stacked(epochs[-1:], flat).items()}
    per_epoch = 2 * 8 * sum(v.numel() for v in final.values())  # the epoch and its difference
    drift = np.full((len(epochs), len(names)), np.nan)
    for chunk in chunk_slices(len(epochs), int(memory_budget_mb * 2**20 // per_epoch)):
        stacked = store.stacked(epochs[chunk], flat)
        for k, stage in enumerate(names):
            if not stage:
                continue
            theta = torch.cat([stacked[n].flatten(1).double() for n in stage], dim=1)  # (chunk, P)
            reference = torch.cat([final[n].flatten() for n in stage])
            drift[chunk, k] = ((theta - reference).norm(dim=1) / reference.norm()).numpy()
    return drift


def feature_drift(
    store: CheckpointStore,
    epochs: Sequence[int],
    depth: int,
    x: torch.Tensor,
    memory_budget_mb: float = 512,
    device: str = "cpu",
) -> np.ndarray:
    """(E,): mean over x of ||h^(t)(x) − h^(T)(x)|| / ||h^(T)(x)||, T = epochs[-1].

    Samples are visited in chunks; for each, the features of a chunk of epochs at a time are compared
    with those of T, both in float64 within the features' share of the budget.
    """
    engine = feature_engine(store, epochs, depth, device, memory_budget_mb)
    x = x.to(device)
    last, n_epochs = engine.n_epochs - 1, engine.n_epochs
    row_bytes = engine.probe(x).feature_bytes * 2  # float64
    budget = memory_budget_mb * 2**20 * FEATURES_SHARE
    rows = max(1, min(len(x), int(budget / 2 // row_bytes)))
    epochs_per_chunk = max(1, int(budget / 2 // (rows * row_bytes)))
    total = torch.zeros(n_epochs, dtype=torch.float64, device=device)
    for r in chunk_slices(len(x), rows):
        reference = engine.shallow_features(x[r], range(last, last + 1))[0].flatten(1).double()
        reference_norm = reference.norm(dim=1).clamp_min(1e-12)
        for chunk in chunk_slices(n_epochs, epochs_per_chunk):
            feats = engine.shallow_features(x[r], range(chunk.start, chunk.stop)).flatten(2).double()
            total[chunk] += ((feats - reference).norm(dim=2) / reference_norm).sum(1)
    return (total / len(x)).cpu().numpy()


def compute_drift(
    store: CheckpointStore,
    depths: Sequence[int],
    x: torch.Tensor,
    memory_budget_mb: float = 512,
    device: str = "cpu",
) -> Drift:
    epochs = store.epochs
    return Drift(
        epochs=np.asarray(epochs),
        parameter_drift=parameter_drift(store, epochs, memory_budget_mb),
        depths=np.asarray(depths, dtype=np.int64),
        feature_drift=np.stack(
            [feature_drift(store, epochs, d, x, memory_budget_mb, device) for d in depths], axis=1
        ),
    )
