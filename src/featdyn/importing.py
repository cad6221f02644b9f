"""Checkpoints from outside featdyn → a run's `checkpoints.h5` (layout of `featdyn.checkpoints`).

A checkpoint series is given as

- a pattern with an `{epoch}` field, e.g. `runs/mine/ckpt_{epoch}.pt` (also `{epoch:03d}`; other
  glob wildcards are allowed around it);
- a glob, e.g. `runs/mine/*.pt`, the epoch being the number after `epoch` in each file name, or else
  the one number that differs between the names;
- a folder, holding checkpoint files (`.safetensors`, `.pt`, `.pth`, `.ckpt`, `.bin`) named like that.

Files are read with `weights_only=True` (safetensors with `safetensors.torch.load_file`), unwrapped
from `state_dict` / `model_state_dict` / `model` entries, freed of the key prefix a wrapper added
(`model.` for Lightning, `module.` for DDP, `net.`, …) and mapped into the key space of the `Staged`
model (`featdyn.external`). The store holds every parameter and buffer (BatchNorm statistics too),
per-epoch metrics from evaluating each checkpoint on the train and test data (`lr` from the recipe the
run says it was trained with, else NaN: unknown), the dataset's training labels (no noise), the
attribute `imported_from` and, as optimizer state, a serialised `None` per epoch: there is none, so
featdyn's continuations (freezing, re-initialisation) refuse imported runs.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from featdyn.checkpoints import _serialise, write_metrics_and_labels
from featdyn.data import TensorData, read_dataset, tensor_data
from featdyn.external import StateDictError, load_model_state
from featdyn.io import atomic_h5
from featdyn.models import Staged, build_model
from featdyn.train import METRIC_COLUMNS, Recipe, epoch_metrics

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")
EPOCH_FIELD = re.compile(r"\{epoch(?::[^}]*)?\}")
EPOCH_IN_NAME = re.compile(r"epoch[=_-]?(\d+)", re.IGNORECASE)


class CheckpointImportError(ValueError):
    """A checkpoint series that cannot be imported as given."""


# --- finding the files -------------------------------------------------------------------------------


def discover_checkpoints(spec: str | os.PathLike) -> dict[int, Path]:
    """epoch → file of a checkpoint series (pattern with `{epoch}`, glob, or folder), sorted by epoch."""
    spec = str(spec)
    if EPOCH_FIELD.search(spec):
        found = _from_epoch_pattern(spec)
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
            where = f"folder {path} (files ending in {', '.join(CHECKPOINT_SUFFIXES)})"
        else:
            files = sorted(_glob(path))
            where = f"glob {spec!r}"
        if not files:
            raise CheckpointImportError(f"no checkpoint files match the {where}")
        varying = _first_wildcard(path.parts) if not path.is_dir() else len(path.parts)
        found = _pair_epochs(files, _epochs_from_names(["/".join(p.parts[varying:]) for p in files]))
    if not found:
        raise CheckpointImportError(f"no checkpoint files match {spec!r}")
    return dict(sorted(found.items()))


def _from_epoch_pattern(spec: str) -> dict[int, Path]:
    """Files matching a pattern with `{epoch}` fields (all fields of one file must agree)."""
    parts = Path(spec).expanduser().parts
    first = next(i for i, part in enumerate(parts) if EPOCH_FIELD.search(part))
    tail = "/".join(parts[first:])
    pieces = EPOCH_FIELD.split(tail)
    regex = re.compile(r"(\d+)".join(_glob_regex(p) for p in pieces))
    glob = Path(*parts[:first], "*".join(pieces))
    matched: dict[Path, int] = {}
    for file in sorted(_glob(glob)):
        match = regex.fullmatch("/".join(file.parts[-len(parts[first:]) :]))
        if match and len(set(map(int, match.groups()))) == 1:
            matched[file] = int(match.group(1))
    if not matched:
        raise CheckpointImportError(f"no checkpoint files match the pattern {spec!r}")
    return _pair_epochs(list(matched), list(matched.values()))


def _glob(pattern: Path) -> list[Path]:
    root = Path(pattern.anchor) if pattern.anchor else Path(".")
    relative = pattern.relative_to(pattern.anchor) if pattern.anchor else pattern
    return [p for p in root.glob(str(relative)) if p.is_file()]


def _first_wildcard(parts: Sequence[str]) -> int:
    """Index of the first path component with a glob wildcard (where file names start to vary)."""
    return next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts) - 1)


def _glob_regex(glob: str) -> str:
    """A glob piece (`*`, `?`) as a regular expression that stays inside one path component."""
    return re.escape(glob).replace(r"\*", "[^/]*").replace(r"\?", "[^/]")


def _epochs_from_names(names: Sequence[str]) -> list[int]:
    """The epoch in each name (the part of the path that a glob varies): the number after `epoch`,
    else the one number that differs between the names."""
    tagged = [EPOCH_IN_NAME.search(n) for n in names]
    if all(tagged):
        return [int(m.group(1)) for m in tagged]
    numbers = [re.findall(r"\d+", n.removesuffix(Path(n).suffix)) for n in names]
    if len(names) == 1 and len(numbers[0]) == 1:
        return [int(numbers[0][0])]
    unnumbered = [n for n, found in zip(names, numbers) if not found]
    if unnumbered:
        raise CheckpointImportError(
            f"the checkpoint names {unnumbered[:3]} hold no epoch number; narrow the glob or give a pattern "
            "with an {epoch} field, e.g. 'runs/mine/ckpt_{epoch}.pt'"
        )
    counts = {len(n) for n in numbers}
    if len(counts) == 1:
        varying = [i for i in range(counts.pop()) if len({n[i] for n in numbers}) > 1]
        if len(varying) == 1:
            return [int(n[varying[0]]) for n in numbers]
    raise CheckpointImportError(
        f"cannot tell the epoch from the file names {list(names)[:5]}{' …' if len(names) > 5 else ''}: "
        "give a pattern with an {epoch} field, e.g. 'runs/mine/ckpt_{epoch}.pt'"
    )


def _pair_epochs(files: Sequence[Path], epochs: Sequence[int]) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for file, epoch in zip(files, epochs):
        if epoch in found:
            raise CheckpointImportError(f"epoch {epoch} is given by two files: {found[epoch]} and {file}")
        found[epoch] = file
    return found


# --- cheap checks (config time) -----------------------------------------------------------------------


def check_header(path: Path) -> None:
    """Raise unless `path` looks like a complete checkpoint file (header only, no tensor data read):
    a safetensors header whose tensors fit in the file, or a torch.save zip archive (or legacy pickle)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if path.suffix == ".safetensors":
                _check_safetensors_header(f, size)
            elif zipfile.is_zipfile(f):
                zipfile.ZipFile(f).namelist()
            else:
                f.seek(0)
                if f.read(1) != b"\x80":
                    raise ValueError("neither a torch.save zip archive nor a pickle")
    except Exception as err:
        raise CheckpointImportError(
            f"unreadable checkpoint file {path}: {type(err).__name__}: {err}"
        ) from err


def _check_safetensors_header(f: Any, size: int) -> None:
    (n,) = struct.unpack("<Q", f.read(8))
    if n > size - 8:
        raise ValueError(f"safetensors header of {n} bytes in a file of {size} bytes")
    header = json.loads(f.read(n))
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    if 8 + n + max(ends, default=0) > size:
        raise ValueError("truncated: the tensors end beyond the end of the file")


def check_external_checkpoints(
    spec: str | os.PathLike, epochs: Sequence[int] | None = None, model: Staged | None = None
) -> dict[int, Path]:
    """Validate a checkpoint series before any analysis: the files exist, every requested epoch has
    one, every header is readable, and (with `model`) the first file fits the model's keys and shapes.
    Returns epoch → file for the epochs to import (all found, or those requested)."""
    found = discover_checkpoints(spec)
    if epochs is not None:
        missing = sorted(set(epochs) - set(found))
        if missing:
            raise CheckpointImportError(
                f"checkpoints {spec!r} lack the epochs {missing}; found epochs {list(found)}"
            )
        found = {e: found[e] for e in sorted(set(epochs))}
    for path in found.values():
        check_header(path)
    if model is not None:
        first = next(iter(found.values()))
        try:
            load_model_state(first, model)
        except StateDictError as err:
            raise CheckpointImportError(str(err)) from err
    return found


# --- import ---------------------------------------------------------------------------------------------


def import_checkpoints(
    spec: str | os.PathLike,
    model: Staged,
    model_spec: Mapping[str, Any],
    data: TensorData,
    out_path: str | os.PathLike,
    provenance: Mapping[str, Any],
    *,
    epochs: Sequence[int] | None = None,
    labels: Mapping[str, np.ndarray] | None = None,
    lr_at: Callable[[int], float] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Write `out_path` (a run's checkpoints.h5) from an outside checkpoint series; returns the
    metrics table (METRIC_COLUMNS, one row per imported epoch, `lr` = `lr_at(epoch)`, NaN without)."""
    files = check_external_checkpoints(spec, epochs)
    y_train = data.y_train.cpu().numpy()
    labels = labels or {"train": y_train, "noise_mask": np.zeros(len(y_train), dtype=bool)}
    reference = model.state_dict()
    rows = []
    with atomic_h5(out_path, provenance) as f:
        f.attrs["model"] = json.dumps(dict(model_spec), sort_keys=True)
        f.attrs["imported_from"] = str(spec)
        f.create_dataset("epochs", data=np.asarray(list(files), dtype=np.int64))
        state = _create_state_datasets(f.create_group("state"), reference, len(files))
        optim = f.create_dataset("optimizer_state", (len(files),), dtype=h5py.vlen_dtype(np.uint8))
        for i, (epoch, path) in enumerate(tqdm(files.items(), desc="import", disable=not progress)):
            try:
                loaded = load_model_state(path, model)
            except StateDictError as err:
                raise CheckpointImportError(f"epoch {epoch}: {err}") from err
            for name, value in loaded.items():
                state[name][i] = value.cpu().numpy()
            optim[i] = _serialise(None)
            model.load_state_dict(loaded)
            lr = float("nan") if lr_at is None else lr_at(epoch)
            rows.append(epoch_metrics(model, data, epoch, lr, None))
        metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
        write_metrics_and_labels(f, metrics, labels)
    return metrics


def _create_state_datasets(
    group: h5py.Group, reference: Mapping[str, torch.Tensor], n: int
) -> dict[str, h5py.Dataset]:
    """`state/<name>` of shape (n, *shape), one chunk per epoch, as `assemble_store` writes them."""
    datasets = {}
    for name, value in reference.items():
        shape = (n, *value.shape)
        dtype = value.detach().cpu().numpy().dtype
        chunks = (1, *value.shape) if value.ndim >= 1 else None
        datasets[name] = group.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks)
    return datasets


def import_configured_run(
    run: Mapping[str, Any],
    recipe: Mapping[str, Any] | None,
    dataset_path: str | os.PathLike,
    out_path: str | os.PathLike,
    device: str | torch.device,
    provenance: Mapping[str, Any],
    progress: bool = False,
) -> pd.DataFrame:
    """Import one configured run (`runs.<name>.checkpoints`): the counterpart of
    `featdyn.train.train_configured_run`, writing the same store layout; `recipe` (the run's, if it
    names one) gives the metrics' learning rate per epoch."""
    arrays = read_dataset(dataset_path)
    data = tensor_data(arrays, device)
    model_spec = {
        "name": run["model"],
        "sample_shape": list(data.sample_shape),
        "classes": arrays.classes,
        "options": dict(run["model_options"]),
    }
    model = build_model(run["model"], data.sample_shape, arrays.classes, **model_spec["options"]).to(device)
    return import_checkpoints(
        run["checkpoints"],
        model,
        model_spec,
        data,
        out_path,
        provenance,
        epochs=run["checkpoint_epochs"],
        lr_at=None if recipe is None else Recipe.from_config(recipe).lr_at,
        progress=progress,
    )
