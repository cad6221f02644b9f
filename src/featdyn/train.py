"""The one training loop: fresh runs, resumption after a kill, and continuations from a checkpoint
with frozen (or re-initialised) stages.

Data order, augmentation and dropout draw from generators seeded by (seed, epoch), so an epoch's
randomness does not depend on what ran before it: a resumed run or a continuation from a saved
epoch replays exactly the same batches as an uninterrupted run.

SIGTERM (a SLURM time limit or preemption) stops a run at the next batch boundary: the resume state,
with the epoch's position, random-generator states and partial sums, is written atomically, the stop
is logged with where the run resumes, and the process exits with status 128 + 15 so the job fails and
is resubmitted; the resumed run is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import shutil
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
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
from featdyn.data import TensorData, noisy_labels, read_dataset, realised_wrong_share, tensor_data
from featdyn.models import Staged, as_input, build_model, preferred_memory_format

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]
STOP_SIGNALS = (signal.SIGTERM,)
"""Signals that stop training at the next safe point (SLURM sends SIGTERM at the time limit and on
preemption, then SIGKILL after a grace period)."""

log = logging.getLogger(__name__)


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


def recorded_epochs(epochs: int, every: int) -> list[int]:
    """Epochs at which a training records a measurement (e.g. a load curve): 0, every `every`-th, the last."""
    return sorted({0, epochs, *range(0, epochs + 1, every)})


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


LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(model output, targets of the batch) → the batch's mean loss."""


def squared_error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1/b) Σ_i ‖f(x_i) − t_i‖² over a batch: paper 2's squared loss (linear networks, regression)."""
    n = len(output)
    return (output.reshape(n, -1) - target.reshape(n, -1)).square().sum(1).mean()


@dataclass
class EpochCursor:
    """An epoch stopped between two batches: everything needed to finish it bit for bit."""

    epoch: int
    next_start: int  # position in the epoch's sample order of the next batch
    batch_rng: torch.Tensor  # the (seed, epoch) generator after the batch order and augmentation so far
    global_rng: torch.Tensor  # torch's CPU generator (dropout on a CPU)
    cuda_rng: torch.Tensor | None  # the CUDA generator of the data's device (dropout on a GPU)
    loss_sum: torch.Tensor
    correct: torch.Tensor

    def batch(self, batch_size: int, n: int) -> str:
        """`batch k of K`: the batch the epoch resumes at."""
        return f"batch {self.next_start // batch_size + 1} of {math.ceil(n / batch_size)}"


class EpochStopped(Exception):
    """`train_epoch` stopped between two batches because a stop was requested."""

    def __init__(self, cursor: EpochCursor):
        super().__init__(f"epoch {cursor.epoch} stopped before sample {cursor.next_start}")
        self.cursor = cursor


def _never() -> bool:
    return False


def _cuda_rng(device: torch.device) -> torch.Tensor | None:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else None


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
    loss_fn: LossFunction = F.cross_entropy,
    *,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    resume: EpochCursor | None = None,
    should_stop: Callable[[], bool] = _never,
) -> tuple[float, float]:
    """One pass over the training data on `loss_fn`; returns the mean loss and accuracy (train mode).

    With float targets (`squared_error` to one-hot vectors or regression targets) the accuracy is NaN.
    Image batches go in the model's memory format (`as_input`); `forward` (default: the model) computes
    the outputs, e.g. a compiled model. `should_stop` is asked after every batch but the last; when it
    says yes, the epoch raises `EpochStopped` with its cursor, from which `resume` finishes the epoch
    exactly as if uninterrupted.
    """
    recipe = spec.recipe
    forward = forward or model
    for group in optimizer.param_groups:
        group["lr"] = recipe.lr_at(epoch)
    device = data.x_train.device
    seed = epoch_seed(spec.seed, epoch)
    g = torch.Generator().manual_seed(seed)
    set_train_mode(model, spec.frozen_depth)
    n = len(data.y_train)
    perm = torch.randperm(n, generator=g).to(device)
    if resume is None:
        torch.manual_seed(seed)  # dropout
        first = 0
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
    else:
        g.set_state(resume.batch_rng)
        torch.set_rng_state(resume.global_rng)
        if resume.cuda_rng is not None:
            torch.cuda.set_rng_state(resume.cuda_rng, device)
        first, total_loss, correct = resume.next_start, resume.loss_sum.to(device), resume.correct.to(device)
    labels = not torch.is_floating_point(data.y_train)
    for start in range(first, n, recipe.batch_size):
        idx = perm[start : start + recipe.batch_size]
        x, y = data.x_train[idx], data.y_train[idx]
        if recipe.augment and x.ndim == 4:
            x = augment_batch(x, recipe.crop_padding, g)
        with autocast(x.device, recipe.precision):
            logits = forward(as_input(model, x))
            loss = loss_fn(logits, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {loss.item()} at epoch {epoch}, batch {start // recipe.batch_size}: "
                f"lower the learning rate (now {recipe.lr_at(epoch)}) or check the data"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.detach() * len(y)
        if labels:
            correct += (logits.argmax(1) == y).sum()
        if start + recipe.batch_size < n and should_stop():
            rngs = g.get_state(), torch.get_rng_state(), _cuda_rng(device)
            cursor = EpochCursor(epoch, start + recipe.batch_size, *rngs, total_loss.cpu(), correct.cpu())
            raise EpochStopped(cursor)
    return total_loss.item() / n, correct.item() / n if labels else float("nan")


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


class StoppedBySignal(SystemExit):
    """Training stopped at a safe point after a signal; the exit status is 128 + the signal number."""

    def __init__(self, signum: int, message: str):
        super().__init__(128 + signum)
        self.signum = signum
        self.message = message

    def __str__(self) -> str:
        return self.message


class StopRequest:
    """The first stop signal received while training (None until one arrives)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    def receive(self, signum: int, frame: Any) -> None:
        self.signum = self.signum or signum


@contextlib.contextmanager
def stop_requests(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[StopRequest]:
    """Turn `signals` into a stop request for the duration of the block (main thread only; elsewhere
    the signals keep their handlers and the request never comes)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {signum: signal.signal(signum, request.receive) for signum in signals}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop(signum: int, when: str, resumes_at: str, state_dir: Path) -> StoppedBySignal:
    """Log that training was stopped by `signum` and where it resumes; the exception that exits."""
    message = (
        f"training stopped by {signal.Signals(signum).name} {when}; resume state written to "
        f"{state_dir / 'resume.pt'}: running the job again resumes at {resumes_at}"
    )
    log.warning(message)
    return StoppedBySignal(signum, message)


def _save_resume(
    state_dir: Path,
    fp: str,
    epoch: int,
    model: Staged,
    optimizer: torch.optim.Optimizer,
    history: list[dict[str, float]],
    cursor: EpochCursor | None,
) -> None:
    """Write `resume.pt` atomically: the state after `epoch` completed epochs (plus `cursor`'s batches)."""
    state = {
        "fingerprint": fp,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "history": history,
        "cursor": None if cursor is None else asdict(cursor),
    }
    save_torch_atomic(state, state_dir / "resume.pt")


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
    the assembled checkpoint store to `out_path`. A stop signal (`STOP_SIGNALS`) saves the resume
    state at the next batch boundary and raises `StoppedBySignal`.
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
    n_train = len(data.y_train)
    resume = _load_resume(state_dir, fp)
    cursor = None
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        history, first = resume["history"], resume["epoch"] + 1
        cursor = None if resume.get("cursor") is None else EpochCursor(**resume["cursor"])
        at = f", {cursor.batch(spec.recipe.batch_size, n_train)}" if cursor else ""
        log.info(f"resuming from {state_dir / 'resume.pt'} at epoch {first}{at}")
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
    with stop_requests() as stop:
        for epoch in bar:
            try:
                train = train_epoch(
                    model, optimizer, data, spec, epoch, forward=forward, resume=cursor, should_stop=stop
                )
            except EpochStopped as stopped:
                _save_resume(state_dir, fp, epoch - 1, model, optimizer, history, stopped.cursor)
                resumes_at = f"epoch {epoch}, {stopped.cursor.batch(spec.recipe.batch_size, n_train)}"
                raise _stop(stop.signum, f"during epoch {epoch}", resumes_at, state_dir) from None
            cursor = None
            row = epoch_metrics(model, data, epoch, spec.recipe.lr_at(epoch), train)
            history.append(row)
            bar.set_postfix(
                loss=f"{row['train_loss']:.3f}",
                acc=f"{row['train_acc']:.3f}",
                test_acc=f"{row['test_acc']:.3f}",
            )
            if on_epoch is not None:
                on_epoch(epoch, model)
            if epoch in saved:
                save_torch_atomic(
                    {"model": model.state_dict(), "optimizer": optimizer.state_dict()},
                    shard_path(state_dir, epoch),
                )
            _save_resume(state_dir, fp, epoch, model, optimizer, history, None)
            if stop():
                resumes_at = f"epoch {epoch + 1}" if epoch < spec.epochs else f"assembling {out_path}"
                raise _stop(stop.signum, f"after epoch {epoch}", resumes_at, state_dir)
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
    """Train one configured run from scratch (or resume it): labels with noise, seeded init, checkpoints.

    The store keeps the labels trained on (`labels/train`), the samples chosen for noise
    (`labels/noise_mask`) and the true labels (`labels/true`); the provenance gets `label_noise`: kind,
    requested rate and realised wrong share (docs/definitions.md §11).
    """
    arrays = read_dataset(dataset_path)
    rate, kind = float(run["label_noise"]), run["label_noise_kind"]
    labels, mask = noisy_labels(arrays.y_train, rate, arrays.classes, spec.seed, kind)
    noise = {"kind": kind, "rate": rate, "wrong_share": realised_wrong_share(labels, arrays.y_train)}
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
        labels={"train": labels, "noise_mask": mask, "true": arrays.y_train},
        provenance={**provenance, "label_noise": noise},
        progress=progress,
    )
