"""Regression load curves (paper 2, SM S5 and Fig. S12; the regression counterpart of SPEC §9).

For layer-l features F (n × p) and a scalar target t (n,), the load is the RMSE of the optimal affine
regressor,

    R_l = min_{w, b} sqrt((1/n) Σ_i (F_i·w + b − t_i)²),

computed as the norm of the centred target's component outside the column space of the centred
features (SVD; singular values below numpy.linalg.lstsq's default cut-off count as zero). The load curve
is R_l against l (l = 0 is the input); its curvature is `featdyn.curvature.curvature`'s mean second
difference (positive = convex, noisy training; negative = concave, lazy training).

`train_regression` trains paper 2's BN MLP (`featdyn.models.deep_mlp` with one output) on the squared
loss (`featdyn.train.train_epoch` with `featdyn.train.squared_error`) and records the training regression
load curve during training. Noise enters through dropout, the learning rate, the batch size, or fresh
Gaussian noise on the targets each epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from featdyn.curvature import curvature_of
from featdyn.data import Arrays, TensorData, tensor_data, with_training_subset
from featdyn.models import build_model
from featdyn.separation import stage_outputs
from featdyn.train import (
    Recipe,
    TrainSpec,
    epoch_seed,
    make_optimizer,
    recorded_epochs,
    squared_error,
    train_epoch,
)

ArrayOrTensor = torch.Tensor | np.ndarray

TARGET_NOISE_STREAM = 0x7A46
"""Offsets the target-noise generator from the batch-order generator of the same epoch."""


# --- the load --------------------------------------------------------------------------------


def regression_load(features: ArrayOrTensor, target: ArrayOrTensor) -> float:
    """RMSE of the least-squares affine fit of `target` (n,) from `features` (n, ...), in float64."""
    f = torch.as_tensor(features).detach().reshape(len(features), -1).to("cpu", torch.float64)
    t = torch.as_tensor(target).detach().reshape(-1).to("cpu", torch.float64)
    f = f - f.mean(0)
    t = t - t.mean()
    u, s, _ = torch.linalg.svd(f, full_matrices=False)
    if s.numel() == 0 or s[0] == 0:
        return float(t.square().mean().sqrt())
    cutoff = s[0] * torch.finfo(torch.float64).eps * max(f.shape)
    basis = u[:, s > cutoff]
    residual = t - basis @ (basis.T @ t)
    return float(residual.square().mean().sqrt())


@torch.no_grad()
def regression_load_curve(model: nn.Module, x: torch.Tensor, target: ArrayOrTensor) -> np.ndarray:
    """R_l for l = 0 (input) … K (output of stage K) of a `Staged` model, in eval mode."""
    was_training = model.training
    model.eval()
    try:
        return np.array([regression_load(features, target) for features in stage_outputs(model, x)])
    finally:
        model.train(was_training)


# --- a synthetic target ------------------------------------------------------------------------


def smooth_target(
    x: ArrayOrTensor, seed: int = 0, n_components: int = 8, frequency: float = 1.0
) -> torch.Tensor:
    """A fixed random smooth function of the input: t(x) = Σ_j a_j sin(frequency · w_j·x + φ_j) (n,).

    w_j ~ N(0, I/p) for p input features, a_j ~ N(0, 1/m), φ_j ~ U[0, 2π), all drawn from `seed` alone,
    so the same seed gives the same function on training and test inputs.
    """
    x = torch.as_tensor(x).reshape(len(x), -1).to(torch.float64)
    g = torch.Generator().manual_seed(seed)
    p = x.shape[1]
    w = torch.randn(p, n_components, generator=g, dtype=torch.float64) / p**0.5
    a = torch.randn(n_components, generator=g, dtype=torch.float64) / n_components**0.5
    phase = 2 * torch.pi * torch.rand(n_components, generator=g, dtype=torch.float64)
    return (torch.sin(frequency * x @ w + phase) @ a).to(torch.float32)


# --- training with a squared loss --------------------------------------------------------------


@dataclass(frozen=True)
class RegressionSettings:
    """Paper 2's MLP recipe (SM S3) on a squared loss; `target_noise` is the std of the fresh noise."""

    n_hidden: int = 7
    width: int = 100
    alpha: float = 0.0
    lr: float = 1e-3
    batch_size: int | None = None  # None: full batch
    epochs: int = 100
    dropout: float = 0.0
    target_noise: float = 0.0
    curve_every: int = 10
    include_output: bool = False

    def curve_epochs(self) -> list[int]:
        """Epochs with a recorded load curve: 0, every `curve_every`-th, and the last."""
        return recorded_epochs(self.epochs, self.curve_every)


@dataclass
class RegressionResult:
    curve_epochs: np.ndarray  # (T,)
    train_load: np.ndarray  # (T, K + 1): R_l on the clean training target
    test_load: np.ndarray  # (K + 1,): final, on the test set
    epoch_loss: np.ndarray  # (E,)
    train_rmse: float  # of the network's prediction, eval mode
    test_rmse: float
    curvature: float  # of the final training load curve


def noisy_target(target: torch.Tensor, std: float, seed: int, epoch: int) -> torch.Tensor:
    """The target one epoch trains on: plus fresh Gaussian noise of `std`, drawn from (seed, epoch)."""
    if std <= 0:
        return target
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch) ^ TARGET_NOISE_STREAM)
    return target + std * torch.randn(target.shape, generator=g).to(target.device)


@torch.no_grad()
def prediction_rmse(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> float:
    model.eval()
    return float((model(x).reshape(-1) - target.reshape(-1)).square().mean().sqrt())


def train_regression(
    x_train: torch.Tensor,
    t_train: torch.Tensor,
    x_test: torch.Tensor,
    t_test: torch.Tensor,
    settings: RegressionSettings,
    seed: int = 0,
) -> RegressionResult:
    """Train the MLP with Adam on the squared loss, recording the training regression load curve."""
    torch.manual_seed(seed)
    model = build_model(
        "deep_mlp",
        x_train.shape[1:],
        1,
        width=settings.width,
        n_hidden=settings.n_hidden,
        negative_slope=settings.alpha,
        dropout=settings.dropout,
    ).to(x_train.device)
    recipe = Recipe(
        optimizer="adam", lr=settings.lr, weight_decay=0.0, batch_size=settings.batch_size or len(x_train)
    )
    spec = TrainSpec(recipe, settings.epochs, seed=seed)
    optimizer = make_optimizer(model, recipe)
    recorded = set(settings.curve_epochs())
    curves = [regression_load_curve(model, x_train, t_train)]
    losses = np.empty(settings.epochs)
    for epoch in range(1, settings.epochs + 1):
        target = noisy_target(t_train, settings.target_noise, seed, epoch)
        data = TensorData(x_train, target, x_test, t_test, 1)
        losses[epoch - 1] = train_epoch(model, optimizer, data, spec, epoch, squared_error)[0]
        if epoch in recorded:
            curves.append(regression_load_curve(model, x_train, t_train))
    train_load = np.stack(curves)
    return RegressionResult(
        curve_epochs=np.asarray(settings.curve_epochs()),
        train_load=train_load,
        test_load=regression_load_curve(model, x_test, t_test),
        epoch_loss=losses,
        train_rmse=prediction_rmse(model, x_train, t_train),
        test_rmse=prediction_rmse(model, x_test, t_test),
        curvature=float(curvature_of(train_load[-1], settings.include_output)),
    )


def regression_data(
    arrays: Arrays,
    n_train: int | None,
    data_seed: int,
    target: Mapping[str, Any],
    device: str | torch.device = "cpu",
) -> TensorData:
    """Normalised inputs (`featdyn.data.tensor_data`), a seeded subset of n_train training samples and the
    whole test set, with `smooth_target` of the normalised inputs as targets (config `regression.target`:
    seed, n_components, frequency): `y_train`, `y_test` are float (n,) targets, `classes` is 1."""
    data = with_training_subset(tensor_data(arrays, device), n_train, data_seed)

    def target_of(x: torch.Tensor) -> torch.Tensor:
        t = smooth_target(x.cpu(), target["seed"], target["n_components"], target["frequency"])
        return t.to(x.device)

    return replace(data, y_train=target_of(data.x_train), y_test=target_of(data.x_test), classes=1)
