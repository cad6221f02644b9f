"""Deep linear networks, orthogonally initialised, on orthogonal data (paper 2, Fig. 5(a) and S11).

Paper 2's SM S3 adopts the setting of Wang et al. (2023, its ref. [41]): a linear network without
BatchNorm, every weight matrix a random orthogonal matrix at initialisation, trained with SGD at
lr 1e-3 on a random orthogonal data matrix with random binary labels; a larger learning rate gives the
"large stepsize" curve and dropout the "dropout" curve (the paper's text lost their values and the
network sizes). Wang et al. train on the squared loss to one-hot targets without biases; so do we,
with mini-batches of 8 by default (full batch is `batch_size=None`). Their theory predicts a linear load
curve for (near) gradient flow; paper 2 reports convex curves with a large step or dropout. With full
batches a large step barely bends the curve here (lr 0.3: +0.002, like lr 1e-3); mini-batch noise does.

`orthogonal_data` draws n samples in d dimensions as the rows (n ≤ d) or columns (n > d) of a random
orthogonal matrix, so X Xᵀ = I_n or XᵀX = I_d, with balanced random binary labels. Weights are
initialised with `torch.nn.init.orthogonal_` from a seeded generator (square: W Wᵀ = I; otherwise
semi-orthogonal), times `init_scale`.

Load curves are `featdyn.separation.load_curve` (D_l = log Tr Σ_w / Tr Σ_b and He & Su's Tr(Σ_w Σ_b⁺),
SPEC §9) on the training data, recorded every `curve_every` epochs. He & Su's measure is degenerate on
this data (paper Fig. S11): with orthonormal samples every sample of a class has the same projection on
the class-mean difference, so Tr(Σ_w Σ_b⁺) = 0 at the input (and at every layer at initialisation, the
layers being rotations); its log is about −34 there, which dominates the curvature of log He–Su.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from featdyn.curvature import curvature_of
from featdyn.data import TensorData
from featdyn.models import linear_net, orthogonal_
from featdyn.separation import load_curve
from featdyn.train import Recipe, TrainSpec, make_optimizer, recorded_epochs, squared_error, train_epoch


def orthogonal_data(n_samples: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, d), semi-orthogonal (X Xᵀ = I_n if n ≤ d, else XᵀX = I_d), and balanced random 0/1 labels."""
    g = torch.Generator().manual_seed(seed)
    x = orthogonal_(torch.empty(n_samples, dim), g)
    labels = (torch.randperm(n_samples, generator=g) < n_samples // 2).long()
    return x.float(), labels


@dataclass(frozen=True)
class LinearNetSettings:
    """One training of Fig. 5(a). The paper states no sizes; these run in seconds on a CPU."""

    n_samples: int = 32
    dim: int = 32
    width: int = 32
    n_hidden: int = 6
    lr: float = 1e-3
    epochs: int = 1500
    batch_size: int | None = 8  # None: full batch
    dropout: float = 0.0
    init_scale: float = 1.0
    curve_every: int = 250
    include_output: bool = False

    def curve_epochs(self) -> list[int]:
        """Epochs with a recorded load curve: 0, every `curve_every`-th, and the last."""
        return recorded_epochs(self.epochs, self.curve_every)


@dataclass
class LinearNetResult:
    curve_epochs: np.ndarray  # (T,)
    D: np.ndarray  # (T, K + 1): log Tr Σ_w / Tr Σ_b on the training data
    he_su: np.ndarray  # (T, K + 1): Tr(Σ_w Σ_b⁺)
    epoch_loss: np.ndarray  # (E,)
    train_acc: float
    curvature: float  # of the final D curve
    curvature_he_su: float  # of the final log He–Su curve


def train_linear_net(settings: LinearNetSettings, seed: int = 0) -> LinearNetResult:
    """Train on `orthogonal_data` with SGD on the squared loss to one-hot targets (Wang et al.)."""
    x, y = orthogonal_data(settings.n_samples, settings.dim, seed)
    model = linear_net(
        settings.dim, 2, settings.width, settings.n_hidden, settings.dropout, settings.init_scale, seed
    )
    targets = F.one_hot(y, 2).float()
    data = TensorData(x, targets, x[:0], targets[:0], 2)  # train_epoch reads the training part only
    recipe = Recipe(
        optimizer="sgd",
        lr=settings.lr,
        momentum=0.0,
        weight_decay=0.0,
        batch_size=settings.batch_size or settings.n_samples,
    )
    spec = TrainSpec(recipe, settings.epochs, seed=seed)
    optimizer = make_optimizer(model, recipe)
    recorded = set(settings.curve_epochs())
    curves = [load_curve(model, x, y, 2)]
    losses = np.empty(settings.epochs)
    for epoch in range(1, settings.epochs + 1):
        losses[epoch - 1] = train_epoch(model, optimizer, data, spec, epoch, squared_error)[0]
        if epoch in recorded:
            curves.append(load_curve(model, x, y, 2))
    model.eval()
    with torch.no_grad():
        train_acc = float((model(x).argmax(1) == y).float().mean())
    d = np.stack([c["D"] for c in curves])
    he_su = np.stack([c["he_su"] for c in curves])
    return LinearNetResult(
        curve_epochs=np.asarray(settings.curve_epochs()),
        D=d,
        he_su=he_su,
        epoch_loss=losses,
        train_acc=train_acc,
        curvature=float(curvature_of(d[-1], settings.include_output)),
        curvature_he_su=float(curvature_of(np.log(he_su[-1]), settings.include_output)),
    )
