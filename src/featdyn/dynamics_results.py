"""Feature-dynamics results without torch: trajectories, PCA perturbation, drift, and their files.

Figure jobs read these through this module, so they start without importing torch; `featdyn.dynamics`
computes them (docs/definitions.md §5-6).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featdyn.h5files import open_h5
from featdyn.io import atomic_h5, load_arrays, save_arrays


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


@dataclass
class Drift:
    epochs: np.ndarray  # (E,) saved epochs; the last one is T
    parameter_drift: np.ndarray  # (E, K) ||θ_t − θ_T|| / ||θ_T|| per stage
    depths: np.ndarray  # (D,)
    feature_drift: np.ndarray  # (E, D) mean_x ||h^(t)(x) − h^(T)(x)|| / ||h^(T)(x)||


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
