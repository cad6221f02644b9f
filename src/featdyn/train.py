"""The one training loop: fresh runs, resumption after a kill, and continuations from a checkpoint
with frozen (or re-initialised) stages.

Data order, augmentation and dropout draw from generators seeded by (seed, epoch), so an epoch's
randomness does not depend on what ran before it: a resumed run or a continuation from a saved
epoch replays exactly the same batches as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from featdyn.checkpoints import assemble_store, save_torch_atomic, shard_path
from featdyn.data import TensorData, noisy_labels, read_dataset, tensor_data
from featdyn.models import Staged, as_input, build_model, preferred_memory_format

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]


@dataclass(frozen=True)
class Recipe:
    """Optimiser and schedule (paper Table 2); lr is multiplied by `gamma` after each milestone epoch."""

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 128
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    augment: bool = False
    crop_padding: int = 4
    precision: str = "fp32"  # or "bf16": autocast of forward pass and loss
    compile: bool = False  # torch.compile the model for the training steps

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Recipe:
        known = {k: v for k, v in cfg.items() if k in cls.__dataclass_fields__}
        if "milestones" in known:
            known["milestones"] = tuple(known["milestones"])
        return cls(**known)

    def lr_at(self, epoch: int) -> float:
        """Learning rate used during `epoch` (1-based)."""
        return self.lr * self.gamma ** sum(epoch > m for m in self.milestones)


@dataclass
class TrainSpec:
    """Everything that determines a run's weights, beside the model's initialisation."""

    recipe: Recipe
    epochs: int
    save_every: int = 1
    seed: int = 0
    frozen_depth: int = 0
    start_epoch: int = 0
    extra_saved_epochs: tuple[int, ...] = field(default_factory=tuple)

    @classmethod
    def from_config(cls, run: Mapping[str, Any], recipe: Mapping[str, Any]) -> TrainSpec:
        return cls(
            Recipe.from_config(recipe),
            int(run["epochs"]),
            int(run["save_every"]),
            int(run["seed"]),
        )

    def saved_epochs(self) -> list[int]:
        keep = {self.start_epoch, self.epochs, *self.extra_saved_epochs}
        keep |= {e for e in range(self.start_epoch, self.epochs + 1) if e % self.save_every == 0}
        return sorted(e for e in keep if self.start_epoch <= e <= self.epochs)


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % (2**63 - 1)


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimiser; the multi-tensor (`foreach`) update, whose results equal the per-tensor
    loop's bit for bit, also on CPUs, where torch would pick the loop."""
    params = list(model.parameters())
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, foreach=True
        )
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay, foreach=True)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}; available: ['adam', 'sgd']")


# --- batched augmentation ----------------------------------------------------------------------


def augment_batch(x: torch.Tensor, padding: int, g: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip of an image batch, as tensor ops."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=g).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=g).to(x.device)
    flip = (torch.rand(n, generator=g) < 0.5).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


# --- epochs ------------------------------------------------------------------------------------


def set_train_mode(model: Staged, frozen_depth: int) -> None:
    """Train mode, except frozen stages, which stay in eval mode (BatchNorm statistics fixed)."""
    model.train()
    for stage in model.stages[:frozen_depth]:
        stage.eval()


def freeze_stages(model: Staged, frozen_depth: int) -> None:
    for stage in model.stages[:frozen_depth]:
        stage.requires_grad_(False)


PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str):
    """bf16 autocast for precision `bf16`, nothing for `fp32`."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; available: {list(PRECISIONS)}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def train_epoch(
    model: Staged,
    optimizer: torch.optim.Optimizer,
    data: TensorData,
    spec: TrainSpec,
    epoch: int,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """One pass over the training data; returns mean loss and accuracy (train mode).

    Image batches go in the model's memory format (`as_input`); `forward` (default: the model) computes
    the logits, e.g. a compiled model.
    """
    recipe = spec.recipe
    forward = forward or model
    for group in optimizer.param_groups:
        group["lr"] = recipe.lr_at(epoch)
    seed = epoch_seed(spec.seed, epoch)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout
    set_train_mode(model, spec.frozen_depth)
    n = len(data.y_train)
    perm = torch.randperm(n, generator=g).to(data.x_train.device)
    total_loss = torch.zeros((), device=data.x_train.device)
    correct = torch.zeros((), device=data.x_train.device, dtype=torch.long)
    for start in range(0, n, recipe.batch_size):
        idx = perm[start : start + recipe.batch_size]
        x, y = data.x_train[idx], data.y_train[idx]
        if recipe.augment and x.ndim == 4:
            x = augment_batch(x, recipe.crop_padding, g)
        with autocast(x.device, recipe.precision):
            logits = forward(as_input(model, x))
            loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {loss.item()} at epoch {epoch}, batch {start // recipe.batch_size}: "
                f"lower the learning rate (now {recipe.lr_at(epoch)}) or check the data"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
    return total_loss.item() / n, correct.item() / n


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in eval mode."""
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        logits = model(as_input(model, x[start : start + batch_size]))
        yb = y[start : start + batch_size]
        loss += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    return loss / len(y), correct / len(y)


def epoch_metrics(
    model: Staged, data: TensorData, epoch: int, lr: float, train: tuple[float, float] | None
) -> dict[str, float]:
    train_loss, train_acc = train if train is not None else evaluate(model, data.x_train, data.y_train)
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
    return dict(
        epoch=epoch, lr=lr, train_loss=train_loss, train_acc=train_acc, test_loss=test_loss, test_acc=test_acc
    )


# --- runs --------------------------------------------------------------------------------------


def fingerprint(provenance: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(provenance, sort_keys=True, default=str).encode()).hexdigest()


def _load_resume(state_dir: Path, fp: str) -> dict[str, Any] | None:
    path = state_dir / "resume.pt"
    if not path.exists():
        return None
    state = torch.load(path, weights_only=False)
    if state.get("fingerprint") != fp:
        shutil.rmtree(state_dir)  # stale state from another configuration
        return None
    return state


def train_run(
    model: Staged,
    data: TensorData,
    spec: TrainSpec,
    *,
    state_dir: str | Path,
    out_path: str | Path,
    model_spec: Mapping[str, Any],
    labels: Mapping[str, np.ndarray],
    provenance: Mapping[str, Any],
    optimizer_state: Mapping[str, Any] | None = None,
    on_epoch: Callable[[int, Staged], None] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Train `model` from `spec.start_epoch` to `spec.epochs`, resuming from `state_dir` if possible.

    The model must hold the weights of `spec.start_epoch` (its initialisation for a fresh run); for a
    continuation pass the optimizer state of that checkpoint. Returns the metrics table and writes
    the assembled checkpoint store to `out_path`.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    fp = fingerprint({"provenance": provenance, "spec": asdict(spec)})
    model.to(memory_format=preferred_memory_format(model))
    forward = torch.compile(model) if spec.recipe.compile else model
    freeze_stages(model, spec.frozen_depth)
    optimizer = make_optimizer(model, spec.recipe)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    saved = spec.saved_epochs()
    resume = _load_resume(state_dir, fp)
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        history, first = resume["history"], resume["epoch"] + 1
    else:
        history = [epoch_metrics(model, data, spec.start_epoch, spec.recipe.lr_at(spec.start_epoch), None)]
        save_torch_atomic(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict()},
            shard_path(state_dir, spec.start_epoch),
        )
        first = spec.start_epoch + 1
    bar = tqdm(
        range(first, spec.epochs + 1),
        desc=str(Path(out_path).parent.name or "train"),
        unit="epoch",
        disable=not progress,
        initial=first - 1 - spec.start_epoch,
        total=spec.epochs - spec.start_epoch,
    )
    for epoch in bar:
        train = train_epoch(model, optimizer, data, spec, epoch, forward)
        row = epoch_metrics(model, data, epoch, spec.recipe.lr_at(epoch), train)
        history.append(row)
        bar.set_postfix(
            loss=f"{row['train_loss']:.3f}", acc=f"{row['train_acc']:.3f}", test_acc=f"{row['test_acc']:.3f}"
        )
        if on_epoch is not None:
            on_epoch(epoch, model)
        if epoch in saved:
            save_torch_atomic(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict()},
                shard_path(state_dir, epoch),
            )
        save_torch_atomic(
            {
                "fingerprint": fp,
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "history": history,
            },
            state_dir / "resume.pt",
        )
    metrics = pd.DataFrame(history, columns=METRIC_COLUMNS)
    assemble_store(state_dir, saved, metrics, out_path, model_spec, labels, provenance)
    shutil.rmtree(state_dir)
    return metrics


def reinitialise_deep_stages(model: Staged, fresh: Staged, depth: int) -> None:
    """Replace stages ≥ depth of `model` by those of a freshly initialised twin."""
    for stage, new in zip(model.stages[depth:], fresh.stages[depth:], strict=True):
        stage.load_state_dict(new.state_dict())


def train_configured_run(
    run: Mapping[str, Any],
    spec: TrainSpec,
    dataset_path: str | Path,
    out_path: str | Path,
    state_dir: str | Path,
    device: str,
    provenance: Mapping[str, Any],
    progress: bool = True,
) -> pd.DataFrame:
    """Train one configured run from scratch (or resume it): labels with noise, seeded init, checkpoints."""
    arrays = read_dataset(dataset_path)
    labels, mask = noisy_labels(arrays.y_train, float(run["label_noise"]), arrays.classes, spec.seed)
    data = tensor_data(arrays, device, train_labels=labels)
    model_spec = {
        "name": run["model"],
        "sample_shape": list(data.sample_shape),
        "classes": arrays.classes,
        "options": dict(run["model_options"]),
    }
    torch.manual_seed(spec.seed)
    model = build_model(run["model"], data.sample_shape, arrays.classes, **model_spec["options"]).to(device)
    return train_run(
        model,
        data,
        spec,
        state_dir=state_dir,
        out_path=out_path,
        model_spec=model_spec,
        labels={"train": labels, "noise_mask": mask},
        provenance=provenance,
        progress=progress,
    )
