"""Noise × nonlinearity phase diagram (docs/definitions.md §9; paper 2, Fig. 1 and SM S3).

A *cell* is one (noise axis, level, LeakyReLU slope α) of the sweep. `run_cell` trains paper 2's deep BN
MLP for every seed of the cell with the project's training loop (`featdyn.train.train_epoch`), starting
from the sweep's base recipe (Adam, lr 1e-3, full batch of 2560 samples, no dropout) with only the cell's
axis changed:

- `label_noise`: each epoch a fresh seeded share `level` of the training labels is reset to uniform random
  classes and Gaussian noise of standard deviation `level × input_noise × std(x)` is added to the inputs
  (the public DNN_Spring code redraws both at every step, which an epoch is at the base full batch); the
  load curves are measured on the clean data;
- `lr`, `dropout`, `batch_size`: the recipe's learning rate, the MLP's dropout rate, the mini-batch size.

Per seed it records the clean training load curve D_l (and He–Su's measure) every `curve_every` epochs, the
final training and test load curves, the curvature of the final training curve, and accuracies.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from featdyn.curvature import curvature_of
from featdyn.data import (
    Arrays,
    TensorData,
    normalizer,
    subset_indices,
    to_float,
)
from featdyn.h5files import open_h5
from featdyn.io import atomic_h5, load_arrays, read_provenance, save_arrays
from featdyn.models import build_model
from featdyn.separation import load_curve
from featdyn.train import (
    Recipe,
    TrainSpec,
    epoch_seed,
    evaluate,
    make_optimizer,
    recorded_epochs,
    train_epoch,
)

NOISE_AXES = ("label_noise", "lr", "dropout", "batch_size")
"""The noise axes of paper 2, Fig. 1 (a)-(d)."""


@dataclass(frozen=True)
class CellSettings:
    """The sweep's base recipe; a cell overrides the field named by its axis."""

    n_train: int = 2560
    epochs: int = 100
    lr: float = 1e-3
    batch_size: int = 2560
    dropout: float = 0.0
    label_noise: float = 0.0
    input_noise: float = 1.0
    width: int = 100
    n_hidden: int = 7
    image_size: int | None = None
    grayscale: bool = False
    optimizer: str = "adam"
    momentum: float = 0.9
    curve_every: int = 5
    include_output: bool = False
    eval_batch_size: int = 4096

    def at(self, axis: str, level: float) -> CellSettings:
        """These settings with noise axis `axis` set to `level`."""
        if axis not in NOISE_AXES:
            raise ValueError(f"unknown noise axis {axis!r}; available: {list(NOISE_AXES)}")
        return replace(self, **{axis: int(level) if axis == "batch_size" else float(level)})

    def recipe(self) -> Recipe:
        return Recipe(
            optimizer=self.optimizer,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=0.0,
            batch_size=self.batch_size,
        )

    def curve_epochs(self) -> list[int]:
        """Epochs with a recorded load curve: 0, every `curve_every`-th, and the last."""
        return recorded_epochs(self.epochs, self.curve_every)


@dataclass
class CellResult:
    """Everything one cell measured; arrays have a leading seed axis."""

    seeds: np.ndarray  # (S,)
    curve_epochs: np.ndarray  # (T,)
    train_D: np.ndarray  # (S, T, L + 1): clean training load curve over epochs
    train_he_su: np.ndarray  # (S, T, L + 1)
    test_D: np.ndarray  # (S, L + 1): final test load curve
    test_acc: np.ndarray  # (S,)
    test_loss: np.ndarray  # (S,)
    train_acc: np.ndarray  # (S,): final, on the clean training data (eval mode)
    epoch_loss: np.ndarray  # (S, E): training loss per epoch (on the data the step saw)
    curvature: np.ndarray  # (S,): of the final training load curve
    curvature_he_su: np.ndarray  # (S,): of log He–Su of the final training load curve


# --- the grid ----------------------------------------------------------------------------------

BASE_CELL = "base"
"""Name of the cell at the base recipe: a level equal to its axis's base value is that same training."""


def cell_name(settings: CellSettings, axis: str, level: float) -> str:
    """`base` where `level` is the base value of `axis`, else `{axis}-{level:g}` (e.g. `lr-0.0001`)."""
    return BASE_CELL if float(getattr(settings, axis)) == float(level) else f"{axis}-{level:g}"


def cell_file_stem(settings: CellSettings, axis: str, level: float, alpha: float) -> str:
    """`{cell name}_a{α:g}`: the file stem of a cell of the sweep."""
    return f"{cell_name(settings, axis, level)}_a{float(alpha):g}"


def cell_settings(settings: CellSettings, name: str) -> CellSettings:
    """The settings of the cell called `name` (see `cell_name`)."""
    if name == BASE_CELL:
        return settings
    axis, _, level = name.partition("-")
    return settings.at(axis, float(level))


# --- data --------------------------------------------------------------------------------------


LUMINANCE = (0.299, 0.587, 0.114)
"""ITU-R BT.601 weights of R, G, B in the grey value."""


def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) colour images → (N, 1, H, W) luminance; other data unchanged."""
    if x.ndim != 4 or x.shape[1] != 3:
        return x
    return torch.tensordot(x, torch.tensor(LUMINANCE, dtype=x.dtype), dims=([1], [0])).unsqueeze(1)


def resize_images(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Antialiased bilinear resize of (N, C, H, W) images to size × size; other data unchanged."""
    if size is None or x.ndim != 4:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def phase_data(arrays: Arrays, settings: CellSettings, seed: int, device: str = "cpu") -> TensorData:
    """A seeded subset of `n_train` training samples and the whole test set, turned grey (`grayscale`),
    resized, normalised with the subset's statistics (as `featdyn.data.tensor_data` does) and moved to
    `device`."""
    idx = subset_indices(len(arrays.y_train), settings.n_train, seed)

    def prepared(x: np.ndarray) -> torch.Tensor:
        x = to_float(x)
        return resize_images(to_grayscale(x) if settings.grayscale else x, settings.image_size)

    x_train, x_test = prepared(arrays.x_train[idx]), prepared(arrays.x_test)
    mean, std = normalizer(x_train)
    return TensorData(
        ((x_train - mean) / std).to(device),
        torch.as_tensor(arrays.y_train[idx], dtype=torch.long, device=device),
        ((x_test - mean) / std).to(device),
        torch.as_tensor(arrays.y_test, dtype=torch.long, device=device),
        arrays.classes,
    )


# --- training one cell -------------------------------------------------------------------------

NOISE_STREAM = 0x5EED
"""Offsets the label+input noise generator from `train_epoch`'s batch-order generator of the same epoch."""


def noisy_epoch_data(data: TensorData, level: float, input_noise: float, seed: int, epoch: int) -> TensorData:
    """The training data one epoch sees under label+input noise `level` (unchanged at level 0).

    A fresh share `level` of the labels (exactly round(level · n) samples) is reset to uniform random
    classes and Gaussian noise of std `level · input_noise · std(x_train)` is added to every input; both
    are drawn from a generator seeded by (seed, epoch), so a cell replays exactly.
    """
    if level <= 0:
        return data
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch) ^ NOISE_STREAM)
    n, device = len(data.y_train), data.x_train.device
    reset = torch.randperm(n, generator=g)[: round(level * n)]
    labels = data.y_train.clone()
    labels[reset.to(device)] = torch.randint(0, data.classes, (len(reset),), generator=g).to(device)
    sigma = level * input_noise * data.x_train.std()
    noise = torch.randn(data.x_train.shape, generator=g).to(device)
    return replace(data, x_train=data.x_train + sigma * noise, y_train=labels)


def train_seed(data: TensorData, settings: CellSettings, alpha: float, seed: int) -> dict[str, np.ndarray]:
    """Train one seed of a cell: its load curves, losses and accuracies (NaN where training diverged)."""
    torch.manual_seed(seed)
    model = build_model(
        "deep_mlp",
        data.sample_shape,
        data.classes,
        width=settings.width,
        n_hidden=settings.n_hidden,
        negative_slope=alpha,
        dropout=settings.dropout,
    ).to(data.x_train.device)
    spec = TrainSpec(settings.recipe(), settings.epochs, seed=seed)
    optimizer = make_optimizer(model, spec.recipe)
    recorded = set(settings.curve_epochs())

    def clean_curve(x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
        return load_curve(model, x, y, data.classes, settings.eval_batch_size)

    curves = [clean_curve(data.x_train, data.y_train)]
    losses = np.full(settings.epochs, np.nan)
    try:
        for epoch in range(1, settings.epochs + 1):
            epoch_data = noisy_epoch_data(data, settings.label_noise, settings.input_noise, seed, epoch)
            losses[epoch - 1] = train_epoch(model, optimizer, epoch_data, spec, epoch)[0]
            if epoch in recorded:
                curves.append(clean_curve(data.x_train, data.y_train))
    except FloatingPointError as err:  # a diverging learning rate is a result of the sweep, not a failure
        print(f"seed {seed}: {err}")
        return _diverged(len(recorded), len(curves[0]["D"]), losses)
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test, settings.eval_batch_size)
    train_acc = evaluate(model, data.x_train, data.y_train, settings.eval_batch_size)[1]
    train_D = np.stack([c["D"] for c in curves])
    train_he_su = np.stack([c["he_su"] for c in curves])
    with np.errstate(divide="ignore"):
        log_he_su = np.log(train_he_su[-1])
    return {
        "train_D": train_D,
        "train_he_su": train_he_su,
        "test_D": clean_curve(data.x_test, data.y_test)["D"],
        "test_acc": np.float64(test_acc),
        "test_loss": np.float64(test_loss),
        "train_acc": np.float64(train_acc),
        "epoch_loss": losses,
        "curvature": np.float64(curvature_of(train_D[-1], settings.include_output)),
        "curvature_he_su": np.float64(curvature_of(log_he_su, settings.include_output)),
    }


def _diverged(n_curves: int, n_layers: int, losses: np.ndarray) -> dict[str, np.ndarray]:
    nan = np.float64(np.nan)
    curves = np.full((n_curves, n_layers), np.nan)
    return {
        "train_D": curves,
        "train_he_su": curves.copy(),
        "test_D": np.full(n_layers, np.nan),
        "test_acc": nan,
        "test_loss": nan,
        "train_acc": nan,
        "epoch_loss": losses,
        "curvature": nan,
        "curvature_he_su": nan,
    }


def run_cell(
    data: TensorData, settings: CellSettings, alpha: float, seeds: Sequence[int], progress: bool = False
) -> CellResult:
    """Train every seed of one cell (α and the settings' noise) in turn; results stacked on a seed axis."""
    per_seed = [
        train_seed(data, settings, alpha, seed)
        for seed in tqdm(seeds, desc=f"α={alpha:g}", unit="seed", disable=not progress)
    ]
    stacked = {key: np.stack([r[key] for r in per_seed]) for key in per_seed[0]}
    return CellResult(
        seeds=np.asarray(seeds, dtype=np.int64), curve_epochs=np.asarray(settings.curve_epochs()), **stacked
    )


# --- files and tables --------------------------------------------------------------------------


def write_cell(result: CellResult, path: str | os.PathLike, provenance: Mapping[str, Any]) -> None:
    with atomic_h5(path, provenance) as f:
        save_arrays(f, vars(result))


def read_cell(path: str | os.PathLike) -> tuple[CellResult, dict[str, Any]]:
    """A cell's results and the provenance (axis, level, alpha, settings) it was written with."""
    with open_h5(path, [field.name for field in fields(CellResult)]) as f:
        return CellResult(**load_arrays(f)), read_provenance(f)


def cell_table(result: CellResult, axis: str, level: float, alpha: float) -> pd.DataFrame:
    """One row per seed: the cell, curvatures, accuracies and the final training load curve D_0 … D_L."""
    frame = pd.DataFrame(
        {
            "axis": axis,
            "level": level,
            "alpha": alpha,
            "seed": result.seeds,
            "curvature": result.curvature,
            "curvature_he_su": result.curvature_he_su,
            "test_acc": result.test_acc,
            "train_acc": result.train_acc,
            "test_loss": result.test_loss,
        }
    )
    final = result.train_D[:, -1]
    return frame.assign(**{f"D_{layer}": final[:, layer] for layer in range(final.shape[1])})


def load_shape(curvature_values: np.ndarray | pd.Series, tolerance: float) -> np.ndarray:
    """concave (< −tolerance), linear (within ±tolerance) or convex (> tolerance); NaN → diverged."""
    values = np.asarray(curvature_values, dtype=np.float64)
    shape = np.where(values < -tolerance, "concave", np.where(values > tolerance, "convex", "linear"))
    return np.where(np.isnan(values), "diverged", shape)


def aggregate_cells(per_seed: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Cell means over seeds (diverged seeds left out): the phase-diagram table of paper 2, Fig. 1.

    Rows keep the axes in their order of appearance, then go by level and α.
    """
    grouped = per_seed.groupby(["axis", "level", "alpha"], sort=False)
    frame = grouped.agg(
        n_seeds=("seed", "size"),
        n_diverged=("curvature", lambda c: int(c.isna().sum())),
        curvature=("curvature", "mean"),
        curvature_sd=("curvature", "std"),
        curvature_he_su=("curvature_he_su", "mean"),
        test_acc=("test_acc", "mean"),
        test_acc_sd=("test_acc", "std"),
        train_acc=("train_acc", "mean"),
    ).reset_index()
    frame["shape"] = load_shape(frame["curvature"], tolerance)
    axis_rank = frame["axis"].map({axis: i for i, axis in enumerate(dict.fromkeys(per_seed["axis"]))})
    return (
        frame.assign(axis_rank=axis_rank)
        .sort_values(["axis_rank", "level", "alpha"], ignore_index=True)
        .drop(columns="axis_rank")
    )


def final_curves(result: CellResult, level: float) -> pd.DataFrame:
    """One row per seed and layer of a cell at noise `level`: the final clean training and test load curves
    D_l, log Tr(Σ_w Σ_b⁺) of the training one, and the seed's test accuracy (SM Figs. S4, S10)."""
    n_seeds, n_layers = result.test_D.shape
    with np.errstate(divide="ignore"):
        log_he_su = np.log(result.train_he_su[:, -1])
    return pd.DataFrame(
        {
            "level": level,
            "seed": np.repeat(result.seeds, n_layers),
            "layer": np.tile(np.arange(n_layers), n_seeds),
            "train_D": result.train_D[:, -1].ravel(),
            "test_D": result.test_D.ravel(),
            "train_log_he_su": log_he_su.ravel(),
            "test_acc": np.repeat(result.test_acc, n_layers),
        }
    )


def read_final_curves(
    paths: Sequence[str | os.PathLike], keys: Sequence[tuple[str, float, float]]
) -> pd.DataFrame:
    """`final_curves` of the cells at `paths` with (axis, level, α) `keys`, one frame."""
    frames = [
        final_curves(read_cell(path)[0], level) for (_, level, _), path in zip(keys, paths, strict=True)
    ]
    return pd.concat(frames, ignore_index=True)


def mean_load_dynamics(result: CellResult) -> tuple[np.ndarray, np.ndarray]:
    """Recorded epochs and the clean training load curve per epoch, averaged over the cell's seeds."""
    return result.curve_epochs, np.nanmean(result.train_D, axis=0)
