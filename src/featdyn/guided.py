"""Guiding a CNN by its load curve (paper 2, SM S2, Fig. S2) and train vs test load curves (Fig. S4).

SM S3's CNN (`featdyn.models.same_shape_cnn`): 16 channels, 7 convolutional layers with BatchNorm and
ReLU; after each activation a 2×2 max-pool and a 2× nearest upsampling keep every intermediate layer at
the input's spatial shape, and a linear layer follows the last convolution. As a Staged network each
conv layer (conv → BN → ReLU → pool → upsample → dropout) is one stage and the linear head the last.
The load curve does not see the upsampling: it copies every pooled value four times, which scales
Tr Σ_w and Tr Σ_b alike. Every stage keeps a Dropout module, so a phase can change its rate.

`guided_training` reproduces the experiment: Adam (lr 1e-3 by default, full batch) until the training
loss falls below `converge_loss` ("nearly converges"), then, from that state (weights and Adam moments),
one continuation per dropout rate in `dropouts` (the paper: p1 turns the concave curve linear and improves
test accuracy, a stronger p2 turns it convex and hurts it; 0 is the no-dropout control). Each phase
records the training load curve D_l (SPEC §9) every `curve_every` epochs, the final train and test load
curves, accuracies and wall time. Batches and dropout are seeded per (seed, epoch) by
`featdyn.train.train_epoch`, so a seed replays exactly.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from featdyn.curvature import curvature_of
from featdyn.data import TensorData
from featdyn.models import Staged, same_shape_cnn
from featdyn.separation import load_curve
from featdyn.train import Recipe, TrainSpec, evaluate, make_optimizer, train_epoch

# --- the CNN (`featdyn.models.same_shape_cnn`) -------------------------------------------------


def set_dropout(model: nn.Module, p: float) -> None:
    """Set the rate of every Dropout module of `model`."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p


# --- train vs test load curves (Fig. S4) -------------------------------------------------------


def train_test_load_curves(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    n_classes: int,
    *,
    include_output: bool = False,
    batch_size: int = 1024,
) -> dict[str, dict[str, np.ndarray]]:
    """`featdyn.separation.load_curve` of one model on its training and its test data, with the curvature
    of D: {"train": {D, he_su, tr_within, tr_between, curvature}, "test": {…}}."""
    curves = {}
    for name, (x, y) in {"train": (x_train, y_train), "test": (x_test, y_test)}.items():
        curve = load_curve(model, x, y, n_classes, batch_size)
        curves[name] = {**curve, "curvature": np.float64(curvature_of(curve["D"], include_output))}
    return curves


# --- phased training (Fig. S2) -----------------------------------------------------------------


@dataclass(frozen=True)
class GuidedSettings:
    """The paper's values are lost from its text except Adam and the CNN's shape; these are ours."""

    lr: float = 1e-3
    batch_size: int | None = None  # None: full batch
    converge_loss: float = 0.02
    max_epochs: int = 300
    phase_epochs: int = 100
    dropouts: tuple[float, ...] = (0.0, 0.1, 0.3)
    channels: int = 16
    n_conv: int = 7
    curve_every: int = 10
    include_output: bool = False
    eval_batch_size: int = 1024


@dataclass
class PhaseResult:
    """One phase: Adam to near convergence (`dropout` 0), or a continuation with dropout `dropout`."""

    dropout: float
    epochs: np.ndarray  # (T,): epochs with a recorded training load curve, the phase's first and last
    train_D: np.ndarray  # (T, K + 1)
    epoch_loss: np.ndarray  # (E,): training loss of each epoch of the phase (train mode)
    train_he_su: np.ndarray  # (K + 1,): He & Su's Tr(Σ_w Σ_b⁺) on the training data, end of phase
    test_D: np.ndarray  # (K + 1,): at the end of the phase
    train_acc: float  # eval mode, end of phase
    test_acc: float
    test_loss: float
    curvature: float  # of the final training D curve
    test_curvature: float
    seconds: float


def _run_phase(
    model: Staged,
    optimizer: torch.optim.Optimizer,
    data: TensorData,
    spec: TrainSpec,
    first_epoch: int,
    dropout: float,
    settings: GuidedSettings,
    stop_below: float | None = None,
) -> PhaseResult:
    """Train epochs first_epoch … spec.epochs (or until the loss < stop_below), recording load curves."""
    started = time.perf_counter()
    set_dropout(model, dropout)

    def train_curve() -> np.ndarray:
        return load_curve(model, data.x_train, data.y_train, data.classes, settings.eval_batch_size)["D"]

    epochs, curves, losses = [first_epoch - 1], [train_curve()], []
    for epoch in range(first_epoch, spec.epochs + 1):
        losses.append(train_epoch(model, optimizer, data, spec, epoch)[0])
        done = stop_below is not None and losses[-1] < stop_below
        if (epoch - first_epoch + 1) % settings.curve_every == 0 or done or epoch == spec.epochs:
            epochs.append(epoch)
            curves.append(train_curve())
        if done:
            break
    final = train_test_load_curves(
        model,
        data.x_train,
        data.y_train,
        data.x_test,
        data.y_test,
        data.classes,
        include_output=settings.include_output,
        batch_size=settings.eval_batch_size,
    )
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test, settings.eval_batch_size)
    return PhaseResult(
        dropout=dropout,
        epochs=np.asarray(epochs),
        train_D=np.stack(curves),
        epoch_loss=np.asarray(losses),
        train_he_su=final["train"]["he_su"],
        test_D=final["test"]["D"],
        train_acc=evaluate(model, data.x_train, data.y_train, settings.eval_batch_size)[1],
        test_acc=test_acc,
        test_loss=test_loss,
        curvature=float(final["train"]["curvature"]),
        test_curvature=float(final["test"]["curvature"]),
        seconds=time.perf_counter() - started,
    )


def phase_name(dropout: float) -> str:
    return f"dropout_{dropout:g}"


def guided_training(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    settings: GuidedSettings | None = None,
    seed: int = 0,
) -> dict[str, PhaseResult]:
    """Fig. S2: `converged` (Adam until loss < converge_loss or max_epochs), then `dropout_{p}` for every
    p of `settings.dropouts`, each continuing the converged weights and optimizer state for phase_epochs.

    Inputs (N, C, H, W) images with even H, W; labels 0 … K−1 (K from the training labels).
    """
    settings = settings or GuidedSettings()
    # canonical strides: CPU convolutions round differently when a size-1 axis has another stride, which
    # would make equal data (e.g. a numpy view with a new channel axis) train differently
    x_train, x_test = (x.clone(memory_format=torch.contiguous_format) for x in (x_train, x_test))
    data = TensorData(x_train, y_train, x_test, y_test, int(y_train.max()) + 1)
    torch.manual_seed(seed)
    model = same_shape_cnn(data.sample_shape, data.classes, settings.channels, settings.n_conv).to(
        x_train.device
    )
    recipe = Recipe(
        optimizer="adam", lr=settings.lr, weight_decay=0.0, batch_size=settings.batch_size or len(y_train)
    )
    optimizer = make_optimizer(model, recipe)
    base = TrainSpec(recipe, settings.max_epochs, seed=seed)
    phases = {"converged": _run_phase(model, optimizer, data, base, 1, 0.0, settings, settings.converge_loss)}
    start = int(phases["converged"].epochs[-1])
    for p in settings.dropouts:
        branch = copy.deepcopy(model)
        branch_optimizer = make_optimizer(branch, recipe)
        branch_optimizer.load_state_dict(optimizer.state_dict())
        spec = TrainSpec(recipe, start + settings.phase_epochs, seed=seed)
        phases[phase_name(p)] = _run_phase(branch, branch_optimizer, data, spec, start + 1, p, settings)
    return phases


def guided_runs(data: TensorData, settings: GuidedSettings, seeds: Sequence[int]) -> dict[str, PhaseResult]:
    """`guided_training` for every seed: phase results keyed `{seed}/{phase}` (e.g. `0/dropout_0.1`)."""
    return {
        f"{seed}/{name}": phase
        for seed in seeds
        for name, phase in guided_training(
            data.x_train, data.y_train, data.x_test, data.y_test, settings, seed
        ).items()
    }


def guided_table(phases: dict[str, PhaseResult]) -> pd.DataFrame:
    """One row per seed and phase of `guided_runs`: dropout, last epoch, curvatures, accuracies, seconds."""
    rows = []
    for key, phase in phases.items():
        seed, _, name = key.partition("/")
        rows.append(
            {
                "seed": int(seed),
                "phase": name,
                "dropout": float(phase.dropout),
                "last_epoch": int(phase.epochs[-1]),
                "final_loss": float(phase.epoch_loss[-1]),
                "curvature": float(phase.curvature),
                "test_curvature": float(phase.test_curvature),
                "train_acc": float(phase.train_acc),
                "test_acc": float(phase.test_acc),
                "test_loss": float(phase.test_loss),
                "seconds": float(phase.seconds),
            }
        )
    return pd.DataFrame(rows)
