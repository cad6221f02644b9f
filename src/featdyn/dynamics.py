"""Feature dynamics (docs/definitions.md §5-6; paper 1, Sec. 4.2, 4.5, App. B).

- Trajectories (Fig. 6): the 2-D feature h^(t)(x) of a bottleneck network for every saved epoch t,
  beside the classification regions of the final network's deep part g^(T) on a grid of the plane.
- PCA perturbation (Fig. 14): features h^(τ)(x) of epochs τ ∈ [T − history, T] plus uniform noise
  a·(u₁ v₁ + u₂ v₂), u ~ U[−1, 1]², along the top-2 principal directions v₁, v₂ of the epoch-T features,
  classified by g^(T); agreement with f^(T)(x) against a. The same unit draws u serve every a.
- Drift (Fig. 11): `||θ_t − θ_T|| / ||θ_T||` per stage (trainable parameters only) and
  `mean_x ||h^(t)(x) − h^(T)(x)|| / ||h^(T)(x)||` per depth, T the last saved epoch.

Features of many epochs come from `CompositeEngine.shallow`, one vmapped call over stacked weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from featdyn.batching import chunk_slices
from featdyn.checkpoints import CheckpointStore
from featdyn.composite import CompositeEngine
from featdyn.h5files import open_h5
from featdyn.io import atomic_h5, load_arrays, save_arrays
from featdyn.models import Staged

Deep = Callable[[torch.Tensor], torch.Tensor]
Limits = tuple[tuple[float, float], tuple[float, float]]


# --- features of many epochs ---------------------------------------------------------------------


def feature_engine(store: CheckpointStore, epochs: Sequence[int], depth: int, device: str) -> CompositeEngine:
    stacked = {k: v.to(device) for k, v in store.stacked(epochs).items()}
    return CompositeEngine(store.build_model().to(device), stacked, depth)


def _rows_per_chunk(engine: CompositeEngine, x: torch.Tensor, memory_budget_mb: float) -> int:
    """Samples per chunk so that the features of every epoch (and intermediates) fit the budget."""
    per_sample = engine.shallow(x[:1], slice(0, 1)).numel() * engine.n_epochs * 4 * 3
    return max(1, int(memory_budget_mb * 2**20 // per_sample))


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


@dataclass
class RegionGrid:
    """Predicted class `classes[iy, ix]` at the plane point (xs[ix], ys[iy])."""

    xs: np.ndarray
    ys: np.ndarray
    classes: np.ndarray

    def lookup(self, coords: np.ndarray) -> np.ndarray:
        """Class of the grid cell nearest to each point of `coords` (..., 2)."""
        ix = _nearest(self.xs, coords[..., 0])
        iy = _nearest(self.ys, coords[..., 1])
        return self.classes[iy, ix]


def _nearest(axis: np.ndarray, values: np.ndarray) -> np.ndarray:
    step = (axis[-1] - axis[0]) / (len(axis) - 1)
    return np.clip(np.rint((values - axis[0]) / step), 0, len(axis) - 1).astype(np.int64)


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


@dataclass
class Trajectories:
    epochs: np.ndarray  # (E,) saved epochs
    features: np.ndarray  # (E, N, 2) h^(t)(x)
    labels: np.ndarray  # (N,) training labels the run used
    sample_index: np.ndarray  # (N,) rows of the training set
    final_prediction: np.ndarray  # (N,) argmax f^(T)(x)
    regions: RegionGrid  # classes of g^(T) on the plane
    depth: int

    @property
    def grid_agreement(self) -> float:
        """Share of final features whose nearest grid cell has the class g^(T) gives them."""
        return float(np.mean(self.regions.lookup(self.features[-1]) == self.final_prediction))


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


@dataclass
class PCAPerturbation:
    epochs: np.ndarray  # (E,) epochs τ of the window, the last one is T
    magnitudes: np.ndarray  # (A,) noise magnitudes a
    scale: str  # "absolute" or "pc_std" (a in units of the std along each direction)
    agreement: np.ndarray  # (A, E) share with argmax g^(T)(h^(τ)(x) + noise) == argmax f^(T)(x)
    accuracy: np.ndarray  # (A, E) share with the prediction == the label
    components: np.ndarray  # (2, p) top-2 principal directions of the epoch-T features
    pc_std: np.ndarray  # (2,) std of the epoch-T features along them
    mean: np.ndarray  # (p,) mean epoch-T feature, the origin of the plane
    coords: np.ndarray  # (E, N, 2) unperturbed features in the plane's coordinates
    figure_magnitude: float
    perturbed_coords: np.ndarray  # (E, N, 2) first draw at the figure magnitude
    perturbed_prediction: np.ndarray  # (E, N)
    reference_prediction: np.ndarray  # (N,) argmax f^(T)(x)
    labels: np.ndarray  # (N,)
    regions: RegionGrid  # classes of g^(T) on the plane through `mean` spanned by `components`
    depth: int


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


@dataclass
class Drift:
    epochs: np.ndarray  # (E,) saved epochs; the last one is T
    parameter_drift: np.ndarray  # (E, K) ||θ_t − θ_T|| / ||θ_T|| per stage
    depths: np.ndarray  # (D,)
    feature_drift: np.ndarray  # (E, D) mean_x ||h^(t)(x) − h^(T)(x)|| / ||h^(T)(x)||


def stage_parameter_names(model: Staged) -> list[list[str]]:
    """Names of the trainable parameters of each stage, as in the model's state dict."""
    return [
        [f"stages.{i}.{name}" for name, _ in stage.named_parameters()] for i, stage in enumerate(model.stages)
    ]


def parameter_drift(store: CheckpointStore, epochs: Sequence[int]) -> np.ndarray:
    """(E, K): relative distance of each stage's parameters at every epoch to those at epochs[-1]."""
    names = stage_parameter_names(store.build_model())
    stacked = store.stacked(epochs, [n for stage in names for n in stage])
    drift = np.full((len(epochs), len(names)), np.nan)
    for k, stage in enumerate(names):
        if not stage:
            continue
        theta = torch.cat([stacked[n].flatten(1).double() for n in stage], dim=1)  # (E, P)
        drift[:, k] = ((theta - theta[-1]).norm(dim=1) / theta[-1].norm()).numpy()
    return drift


def feature_drift(
    store: CheckpointStore,
    epochs: Sequence[int],
    depth: int,
    x: torch.Tensor,
    memory_budget_mb: float = 512,
    device: str = "cpu",
) -> np.ndarray:
    """(E,): mean over x of ||h^(t)(x) − h^(T)(x)|| / ||h^(T)(x)||, T = epochs[-1]."""
    engine = feature_engine(store, epochs, depth, device)
    x = x.to(device)
    total = torch.zeros(len(epochs), dtype=torch.float64, device=device)
    for rows in chunk_slices(len(x), _rows_per_chunk(engine, x, memory_budget_mb)):
        feats = engine.shallow(x[rows]).flatten(2).double()  # (E, b, p)
        reference = feats[-1]
        total += ((feats - reference).norm(dim=2) / reference.norm(dim=1).clamp_min(1e-12)).sum(1)
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
        parameter_drift=parameter_drift(store, epochs),
        depths=np.asarray(depths, dtype=np.int64),
        feature_drift=np.stack(
            [feature_drift(store, epochs, d, x, memory_budget_mb, device) for d in depths], axis=1
        ),
    )


# --- files ---------------------------------------------------------------------------------------


def _save(obj: Any, path: str | Path, provenance: Mapping[str, Any], **attrs: Any) -> None:
    """Write a result dataclass: arrays as datasets, a RegionGrid as group `regions`, scalars as attrs."""
    with atomic_h5(path, provenance) as f:
        f.attrs.update(attrs)
        for name, value in dataclasses.asdict(obj).items():
            if isinstance(getattr(obj, name), RegionGrid):
                save_arrays(f.create_group(name), value)
            elif isinstance(value, np.ndarray):
                save_arrays(f, {name: value})
            else:
                f.attrs[name] = value


def _load(cls: type, path: str | Path) -> Any:
    with open_h5(path) as f:
        values: dict[str, Any] = {**load_arrays(f), **dict(f.attrs)}
        if "regions" in f:
            values["regions"] = RegionGrid(**load_arrays(f["regions"]))
        return cls(**{field.name: values[field.name] for field in dataclasses.fields(cls)})


def write_trajectories(result: Trajectories, path: str | Path, provenance: Mapping[str, Any]) -> None:
    _save(result, path, provenance, grid_agreement=result.grid_agreement)


def read_trajectories(path: str | Path) -> Trajectories:
    return _load(Trajectories, path)


def write_pca_perturbation(result: PCAPerturbation, path: str | Path, provenance: Mapping[str, Any]) -> None:
    _save(result, path, provenance)


def read_pca_perturbation(path: str | Path) -> PCAPerturbation:
    return _load(PCAPerturbation, path)


def write_drift(result: Drift, path: str | Path, provenance: Mapping[str, Any]) -> None:
    _save(result, path, provenance)


def read_drift(path: str | Path) -> Drift:
    return _load(Drift, path)


def drift_frames(drifts: Mapping[str, Drift]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy tables (run, stage, epoch, drift) and (run, depth, epoch, drift) of several runs."""
    params, feats = [], []
    for run, d in drifts.items():
        n_epochs, n_stages = d.parameter_drift.shape
        params.append(
            pd.DataFrame(
                {
                    "run": run,
                    "stage": np.tile(np.arange(1, n_stages + 1), n_epochs),
                    "epoch": np.repeat(d.epochs, n_stages),
                    "drift": d.parameter_drift.ravel(),
                }
            )
        )
        feats.append(
            pd.DataFrame(
                {
                    "run": run,
                    "depth": np.tile(d.depths, n_epochs),
                    "epoch": np.repeat(d.epochs, len(d.depths)),
                    "drift": d.feature_drift.ravel(),
                }
            )
        )
    return pd.concat(params, ignore_index=True), pd.concat(feats, ignore_index=True)
