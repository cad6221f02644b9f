"""Tiny data and tiny training runs shared by the tests (also importable from subprocesses)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from featdyn.config import load_config
from featdyn.data import Arrays, tensor_data
from featdyn.models import build_model
from featdyn.train import Recipe, TrainSpec, train_run

ROOT = Path(__file__).parents[1]
TINY = ROOT / "configs" / "tiny.yaml"


def tiny_config(**overrides) -> dict:
    """The effective config of `configs/tiny.yaml` (defaults filled, checked), with optional overrides."""
    return load_config(TINY, overrides)


def tiny_arrays(
    n_train: int = 240, n_test: int = 120, length: int = 40, seed: int = 0, noise: float = 0.15
) -> Arrays:
    """Class-dependent smooth signals (10 classes) that a small net learns in a few epochs."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length, dtype=np.float32)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n)
        x = np.sin(2 * np.pi * (y[:, None] + 1) * t / 3) + noise * rng.standard_normal((n, length))
        return x.astype(np.float32), y.astype(np.int64)

    (xtr, ytr), (xte, yte) = make(n_train), make(n_test)
    return Arrays(xtr, ytr, xte, yte, 10, "synthetic")


def train_tiny(
    tmp_path, model_name: str = "resnet1d", epochs: int = 4, seed: int = 0, on_epoch=None, **options
):
    """Train a tiny run; returns the checkpoint path, the tensors and the spec."""
    arrays = tiny_arrays()
    data = tensor_data(arrays)
    torch.manual_seed(seed)
    model = build_model(model_name, data.sample_shape, 10, **options)
    spec = TrainSpec(Recipe(optimizer="sgd", lr=0.05, batch_size=40, milestones=(2,)), epochs, 1, seed)
    spec_model = {
        "name": model_name,
        "sample_shape": list(data.sample_shape),
        "classes": 10,
        "options": options,
    }
    path = tmp_path / "checkpoints.h5"
    labels = {"train": arrays.y_train, "noise_mask": np.zeros(len(arrays.y_train), bool)}
    train_run(
        model,
        data,
        spec,
        state_dir=tmp_path / "state",
        out_path=path,
        model_spec=spec_model,
        labels=labels,
        provenance={"test": model_name},
        on_epoch=on_epoch,
        progress=False,
    )
    return path, data, spec


DROPOUT_MLP = {"width": 32, "n_hidden": 2, "dropout": 0.3}
"""Options of `dropout_model`: a deep MLP whose dropout draws from torch's global generator."""


def tiny_spec(epochs: int = 3) -> TrainSpec:
    """SGD with a milestone, 6 batches of 40 per epoch of `tiny_arrays`."""
    return TrainSpec(Recipe(optimizer="sgd", lr=0.05, batch_size=40, milestones=(2,)), epochs, 1, 0)


def dropout_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("deep_mlp", (40,), 10, **DROPOUT_MLP)


def train_tiny_run(tmp_path: Path, model: torch.nn.Module, spec: TrainSpec, on_epoch=None) -> pd.DataFrame:
    """`train_run` of `model` (a `dropout_model`) on `tiny_arrays`, into `tmp_path`."""
    data = tensor_data(tiny_arrays())
    return train_run(
        model,
        data,
        spec,
        state_dir=tmp_path / "state",
        out_path=tmp_path / "checkpoints.h5",
        model_spec={"name": "deep_mlp", "sample_shape": [40], "classes": 10, "options": DROPOUT_MLP},
        labels={"train": data.y_train.numpy()},
        provenance={"test": "deep_mlp with dropout"},
        on_epoch=on_epoch,
        progress=False,
    )
