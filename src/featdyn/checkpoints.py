"""Checkpoints: kill-safe per-epoch shards while training, one HDF5 store per run at the end.

While a run trains, every completed epoch is written atomically (write, then rename) into a state
folder that lies outside Snakemake's declared outputs: `epoch_XXXXX.pt` for each saved epoch (weights
and optimizer state) and `resume.pt` (the latest epoch's full state and the metrics so far). A kill
can only lose the epoch in progress. When training ends the shards are assembled into
`checkpoints.h5`:

- `epochs` (n,): the saved epochs (0 = initialisation);
- `state/<name>` (n, *shape): every parameter and buffer with a leading epoch axis;
- `optimizer_state` (n,): the serialised optimizer state per saved epoch (for exact continuations);
- `metrics/<column>` (E + 1,): lr, train/test loss and accuracy for every epoch;
- `labels/train`, `labels/noise_mask` and `labels/true`: the training labels used, the samples chosen
  for label noise and the dataset's true labels (configured runs; docs/definitions.md §11);
- attributes `model` (JSON: name, sample shape, classes, options) and `config` (provenance; for a
  configured run it holds `label_noise`: kind, requested rate and realised wrong share).
  A store imported from outside checkpoints (`featdyn.importing`) also has `imported_from` (the
  checkpoint pattern) and no optimizer state (a serialised None per epoch).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch

from featdyn.h5files import open_h5
from featdyn.io import atomic_h5, atomic_path
from featdyn.models import Staged, build_model


def save_torch_atomic(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def shard_path(state_dir: str | os.PathLike, epoch: int) -> Path:
    return Path(state_dir) / f"epoch_{epoch:05d}.pt"


def _serialise(obj: Any) -> np.ndarray:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def write_metrics_and_labels(f: h5py.File, metrics: pd.DataFrame, labels: Mapping[str, np.ndarray]) -> None:
    """A store's `metrics` group (a dataset per column, their order in attribute `columns`) and `labels`."""
    g = f.create_group("metrics")
    g.attrs["columns"] = list(metrics.columns)
    for column in metrics.columns:
        g.create_dataset(column, data=metrics[column].to_numpy())
    g = f.create_group("labels")
    for name, values in labels.items():
        g.create_dataset(name, data=values)


def assemble_store(
    state_dir: str | os.PathLike,
    epochs: Sequence[int],
    metrics: pd.DataFrame,
    path: str | os.PathLike,
    model_spec: Mapping[str, Any],
    labels: Mapping[str, np.ndarray],
    provenance: Mapping[str, Any],
) -> None:
    """Write the run's `checkpoints.h5` from its per-epoch shards, atomically."""
    shards = [torch.load(shard_path(state_dir, e), weights_only=False) for e in epochs]
    with atomic_h5(path, provenance) as f:
        f.attrs["model"] = json.dumps(dict(model_spec), sort_keys=True)
        f.create_dataset("epochs", data=np.asarray(epochs, dtype=np.int64))
        state = f.create_group("state")
        for name in shards[0]["model"]:
            stacked = torch.stack([s["model"][name] for s in shards]).cpu().numpy()
            state.create_dataset(
                name, data=stacked, chunks=(1, *stacked.shape[1:]) if stacked.ndim > 1 else None
            )
        optim = f.create_dataset("optimizer_state", (len(shards),), dtype=h5py.vlen_dtype(np.uint8))
        for i, s in enumerate(shards):
            optim[i] = _serialise(s["optimizer"])
        write_metrics_and_labels(f, metrics, labels)


def strided_epochs(saved: Sequence[int], stride: int) -> list[int]:
    """Every `stride`-th of the saved epochs, counted back from the last one (always included)."""
    return list(saved)[::-1][::stride][::-1]


def training_provenance(config: Mapping[str, Any], run: str) -> dict[str, Any]:
    """The provenance a run's `checkpoints.h5` records: its `runs` entry and its recipe."""
    entry = config["runs"][run]
    return {"run": dict(entry), "recipe": dict(config["recipes"][entry["recipe"]])}


STORE_ENTRIES = ("epochs", "state", "optimizer_state", "metrics", "labels")


class CheckpointStore:
    """Read access to a run's `checkpoints.h5`.

    With `expected` (config subtrees, e.g. `training_provenance(config, run)`), a store written for
    another config is rejected as stale (`featdyn.h5files.UnusableInputError`) instead of analysed.
    """

    def __init__(self, path: str | os.PathLike, expected: Mapping[str, Any] | None = None):
        self.path = Path(path)
        with open_h5(self.path, STORE_ENTRIES, attrs=("model",), expected=expected) as f:
            self.epochs: list[int] = f["epochs"][()].tolist()
            self.model_spec: dict[str, Any] = json.loads(f.attrs["model"])
            self.config: dict[str, Any] = json.loads(f.attrs.get("config", "{}"))
            self.imported_from: str | None = (
                str(f.attrs["imported_from"]) if "imported_from" in f.attrs else None
            )
            self.state_names: list[str] = list(f["state"].keys())
            group = f["metrics"]
            self.metrics = pd.DataFrame({k: group[k][()] for k in group.attrs.get("columns", list(group))})
            self.labels = {k: v[()] for k, v in f["labels"].items()}

    def index(self, epoch: int) -> int:
        try:
            return self.epochs.index(epoch)
        except ValueError:
            raise KeyError(f"epoch {epoch} was not saved in {self.path}; saved: {self.epochs}") from None

    def build_model(self) -> Staged:
        spec = self.model_spec
        return build_model(spec["name"], spec["sample_shape"], spec["classes"], **spec.get("options", {}))

    def state_dict(self, epoch: int) -> dict[str, torch.Tensor]:
        i = self.index(epoch)
        with open_h5(self.path) as f:
            return {name: torch.from_numpy(np.asarray(f["state"][name][i])) for name in self.state_names}

    def model_at(self, epoch: int, device: str | torch.device = "cpu") -> Staged:
        model = self.build_model()
        model.load_state_dict(self.state_dict(epoch))
        return model.to(device).eval()

    def stacked(self, epochs: Iterable[int], names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Every state entry (or those named) for several epochs, stacked on a leading axis."""
        idx = [self.index(e) for e in epochs]
        names = self.state_names if names is None else list(names)
        with open_h5(self.path) as f:
            return {n: torch.from_numpy(np.stack([f["state"][n][i] for i in idx])) for n in names}

    def optimizer_state(self, epoch: int) -> dict[str, Any]:
        with open_h5(self.path) as f:
            raw = f["optimizer_state"][self.index(epoch)]
        return torch.load(io.BytesIO(raw.tobytes()), weights_only=False)
