"""Composite networks `c_{s,t}(x) = g^(t)(h^(s)(x))` over many checkpoint pairs, and temporal consistency.

The engine (docs/definitions.md §1-2) is organised for the real workload (hundreds of checkpoints, tens of
thousands of samples):

- shallow features h^(s)(x) are computed once per (epoch, data batch), for all epochs in one
  vmapped call over the stacked checkpoint weights;
- the pairs of the band |s − t| ≤ w are visited by offset k = s − t: for each k, the deep parts of all
  epochs t run in one vmapped call on the features of epochs t + k;
- per-sample consistency for every s of the window comes from cumulative sums of the agreement
  indicators over the offsets, never from a recomputation per (s, t);
- data and epochs are streamed in chunks sized from a memory budget.

Epoch indices below are positions in the list of analysed epochs; offsets k < 0 are memory (old
shallow, new deep), k > 0 transferability (new shallow, old deep). `naive_reference` follows the
definitions literally and serves tests and the benchmark.
"""

from __future__ import annotations

import resource
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from featdyn.batching import chunk_slices
from featdyn.checkpoints import CheckpointStore, strided_epochs
from featdyn.h5files import open_h5
from featdyn.io import atomic_h5, load_arrays, save_arrays
from featdyn.models import Staged, check_depth


def stage_state(state: Mapping[str, torch.Tensor], start: int, stop: int) -> dict[str, torch.Tensor]:
    """Entries of a (stacked) state dict that belong to stages[start:stop], without BN step counters."""
    prefixes = tuple(f"stages.{i}." for i in range(start, stop))
    return {
        k: v for k, v in state.items() if k.startswith(prefixes) and not k.endswith("num_batches_tracked")
    }


@dataclass
class CompositeEngine:
    """Batched evaluation of shallow and deep parts of many checkpoints of one model."""

    model: Staged
    stacked: Mapping[str, torch.Tensor]  # name -> (E, ...) for every analysed epoch
    depth: int
    precision: str = "fp32"  # or "bf16" (autocast)
    _shallow: dict[str, torch.Tensor] = field(init=False, repr=False)
    _deep: dict[str, torch.Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_depth(self.model, self.depth)
        self.model.eval()
        self._shallow = stage_state(self.stacked, 0, self.depth)
        self._deep = stage_state(self.stacked, self.depth, self.model.n_stages)

    @property
    def n_epochs(self) -> int:
        return next(iter(self.stacked.values())).shape[0]

    def _autocast(self):
        if self.precision == "bf16":
            device_type = next(iter(self.stacked.values())).device.type
            return torch.autocast(device_type, dtype=torch.bfloat16)
        return nullcontext()

    @torch.no_grad()
    def shallow(self, x: torch.Tensor, epochs: slice = slice(None)) -> torch.Tensor:
        """h^(s)(x) for the epochs in `epochs`: (n_epochs, batch, ...)."""
        state = {k: v[epochs] for k, v in self._shallow.items()}

        def h(st: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(self.model, st, (x,), {"start": 0, "stop": self.depth})

        with self._autocast():
            return vmap(h)(state).float()

    @torch.no_grad()
    def deep(self, features: torch.Tensor, epochs: slice) -> torch.Tensor:
        """g^(t)(features[i]) for the i-th epoch t of `epochs`: logits (n_epochs, batch, classes)."""
        state = {k: v[epochs] for k, v in self._deep.items()}

        def g(st: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
            return functional_call(self.model, st, (h,), {"start": self.depth, "stop": None})

        with self._autocast():
            return vmap(g)(state, features).float()


@dataclass
class BandResult:
    """Composite metrics over the band |s − t| ≤ w (arrays indexed [k + w, t], NaN outside the epochs)."""

    epochs: np.ndarray  # (E,) analysed epochs
    window: int
    accuracy: np.ndarray  # (2w+1, E)
    cross_entropy: np.ndarray
    agreement: np.ndarray  # share with argmax c_{s,t} == argmax f^(t)
    consistency: np.ndarray  # dataset-level C(s, t), agree variant
    consistency_correct: np.ndarray  # C(s, t), correct variant
    reference_epochs: np.ndarray  # (R,) epochs t with per-sample consistency
    # per-sample c(x; t ∓ j, t) for j = 0..w: (R, 2, w+1, N), direction 0 = memory, 1 = transferability
    sample_consistency: np.ndarray
    sample_consistency_correct: np.ndarray
    peak_rss_mb: float = 0.0

    @property
    def offsets(self) -> np.ndarray:
        return np.arange(-self.window, self.window + 1)

    def pair_value(self, name: str, s_index: int, t_index: int) -> float:
        return float(getattr(self, name)[s_index - t_index + self.window, t_index])


def _cumulative_mean(indicator: torch.Tensor) -> torch.Tensor:
    """Mean of indicator[0..j] for every j along axis 0."""
    counts = torch.arange(1, indicator.shape[0] + 1, dtype=indicator.dtype, device=indicator.device)
    return indicator.cumsum(0) / counts.view(-1, *([1] * (indicator.ndim - 1)))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def composite_band(
    engine: CompositeEngine,
    epochs: Sequence[int],
    x: torch.Tensor,
    y: torch.Tensor,
    window: int | None = None,
    reference_epochs: Sequence[int] = (),
    batch_size: int = 256,
    memory_budget_mb: float = 1024.0,
    progress: bool = False,
) -> BandResult:
    """Accuracy, cross-entropy, agreement and temporal consistency for every pair of the band.

    `window=None` evaluates the full matrix. Per-sample consistency is kept for `reference_epochs`.
    """
    n_epochs = engine.n_epochs
    w = n_epochs - 1 if window is None else min(int(window), n_epochs - 1)
    n_off, n = 2 * w + 1, len(y)
    ref_idx = [list(epochs).index(e) for e in reference_epochs]
    sums = {
        name: torch.zeros(n_off, n_epochs, dtype=torch.float64)
        for name in ("correct", "ce", "agree", "cons", "cons_correct")
    }
    per_sample = torch.full((2, len(ref_idx), 2, w + 1, n), float("nan"), dtype=torch.float64)
    valid = _band_validity(w, n_epochs)
    batches = chunk_slices(n, batch_size)
    for batch in tqdm(batches, desc="composite", unit="batch", disable=not progress):
        xb, yb = x[batch], y[batch]
        y_cpu = yb.cpu()
        feats = torch.cat(
            [engine.shallow(xb, ch) for ch in _epoch_chunks(engine, xb, n_epochs, memory_budget_mb)]
        )
        preds, ce = _band_predictions(engine, feats, yb, w, memory_budget_mb)
        agree = (preds == preds[w][None]) & valid[..., None]
        correct = (preds == y_cpu[None, None]) & valid[..., None]
        sums["correct"] += correct.sum(-1)
        sums["agree"] += agree.sum(-1)
        sums["ce"] += ce
        for key, indicator, out in (("cons", agree, 0), ("cons_correct", correct, 1)):
            band = _consistency_band(indicator.double(), w)  # (2, w+1, E, b)
            sums[key] += _to_offset_layout(band.sum(-1), w)
            if ref_idx:
                per_sample[out, :, :, :, batch] = band[:, :, ref_idx].permute(2, 0, 1, 3)
    nan_mask = ~valid
    result = {k: (v / n).masked_fill(nan_mask, float("nan")).numpy() for k, v in sums.items()}
    side_valid = torch.stack([_side_validity(w, n_epochs, -1), _side_validity(w, n_epochs, 1)])[:, :, ref_idx]
    per_sample = per_sample.masked_fill(~side_valid.permute(2, 0, 1)[None, ..., None], float("nan"))
    return BandResult(
        epochs=np.asarray(epochs),
        window=w,
        accuracy=result["correct"],
        cross_entropy=result["ce"],
        agreement=result["agree"],
        consistency=result["cons"],
        consistency_correct=result["cons_correct"],
        reference_epochs=np.asarray(reference_epochs, dtype=np.int64),
        sample_consistency=per_sample[0].numpy(),
        sample_consistency_correct=per_sample[1].numpy(),
        peak_rss_mb=_peak_rss_mb(),
    )


def _epoch_chunks(engine: CompositeEngine, xb: torch.Tensor, n_epochs: int, budget_mb: float) -> list[slice]:
    per_epoch = engine.shallow(xb[:1], slice(0, 1)).numel() * len(xb) * 4 * 3  # features + intermediates
    return chunk_slices(n_epochs, int(budget_mb * 2**20 // max(per_epoch, 1)))


def _band_validity(w: int, n_epochs: int) -> torch.Tensor:
    """valid[k + w, t] = 0 ≤ t + k < E."""
    k = torch.arange(-w, w + 1)[:, None]
    t = torch.arange(n_epochs)[None, :]
    return (t + k >= 0) & (t + k < n_epochs)


def _side_validity(w: int, n_epochs: int, direction: int) -> torch.Tensor:
    """valid[j, t] = 0 ≤ t + direction·j < E for j = 0..w."""
    j = torch.arange(w + 1)[:, None]
    s = torch.arange(n_epochs)[None, :] + direction * j
    return (s >= 0) & (s < n_epochs)


def _band_predictions(
    engine: CompositeEngine, feats: torch.Tensor, yb: torch.Tensor, w: int, budget_mb: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted class (−1 outside the epochs) and summed CE for every (offset, t) of the band."""
    n_epochs, b = feats.shape[0], feats.shape[1]
    preds = torch.full((2 * w + 1, n_epochs, b), -1, dtype=torch.long)
    ce = torch.zeros(2 * w + 1, n_epochs, dtype=torch.float64)
    per_epoch_bytes = feats[0].numel() * 4 * 3
    t_chunk = int(budget_mb * 2**20 // max(per_epoch_bytes, 1))
    for k in range(-w, w + 1):
        t_lo, t_hi = max(0, -k), min(n_epochs, n_epochs - k)
        for ts in chunk_slices(t_hi - t_lo, t_chunk):
            t = slice(t_lo + ts.start, t_lo + ts.stop)
            logits = engine.deep(feats[t.start + k : t.stop + k], t)
            preds[k + w, t] = logits.argmax(-1).cpu()
            loss = F.cross_entropy(logits.flatten(0, 1), yb.repeat(t.stop - t.start), reduction="none")
            ce[k + w, t] = loss.view(-1, b).sum(-1).double().cpu()
    return preds, ce


def _consistency_band(indicator: torch.Tensor, w: int) -> torch.Tensor:
    """Cumulative means outward from the diagonal: [direction, j, t, x] = mean_{i≤j} ind[w ∓ i, t, x]."""
    memory = _cumulative_mean(indicator[: w + 1].flip(0))  # offsets 0, −1, …, −w
    transfer = _cumulative_mean(indicator[w:])  # offsets 0, 1, …, w
    return torch.stack([memory, transfer])


def _to_offset_layout(sides: torch.Tensor, w: int) -> torch.Tensor:
    """(2, w+1, E) memory/transfer sides → (2w+1, E) indexed by offset k + w."""
    return torch.cat([sides[0].flip(0), sides[1][1:]]).double()


# --- summaries ---------------------------------------------------------------------------------


def memory_window(result: BandResult, threshold: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """W_θ(t): the largest w (in epochs) with C(t − w, t) ≥ θ; and whether it hit the band's edge."""
    w = result.window
    memory_side = result.consistency[w::-1]  # [j, t] = C(t − j, t)
    ok = np.nan_to_num(memory_side, nan=-1.0) >= threshold
    largest = np.where(ok.any(0), (w - np.argmax(ok[::-1], axis=0)), 0)
    t_idx = np.arange(len(result.epochs))
    s_idx = np.clip(t_idx - largest, 0, None)
    censored = (largest == w) | (s_idx == 0)
    return result.epochs[t_idx] - result.epochs[s_idx], censored


# --- literal reference (tests, benchmark) -------------------------------------------------------


@torch.no_grad()
def naive_reference(
    store: CheckpointStore, depth: int, epochs: Sequence[int], x: torch.Tensor, y: torch.Tensor, window: int
) -> dict[str, np.ndarray]:
    """The definitions applied literally: fresh modules per pair, consistency by its own loop over τ."""

    def composite_logits(s: int, t: int) -> torch.Tensor:
        shallow, deep = store.model_at(epochs[s]), store.model_at(epochs[t])
        return deep(shallow(x, 0, depth), depth, None)

    n_epochs = len(epochs)
    shape = (2 * window + 1, n_epochs)
    out = {k: np.full(shape, np.nan) for k in ("accuracy", "cross_entropy", "agreement", "consistency")}
    for t in range(n_epochs):
        reference = composite_logits(t, t).argmax(1)
        for s in range(max(0, t - window), min(n_epochs, t + window + 1)):
            logits = composite_logits(s, t)
            k = s - t + window
            out["accuracy"][k, t] = (logits.argmax(1) == y).double().mean().item()
            out["cross_entropy"][k, t] = F.cross_entropy(logits, y).item()
            out["agreement"][k, t] = (logits.argmax(1) == reference).double().mean().item()
            taus = range(min(s, t), max(s, t) + 1)
            hits = torch.stack([composite_logits(tau, t).argmax(1) == reference for tau in taus]).double()
            out["consistency"][k, t] = hits.mean(0).mean().item()
    return out


# --- files -------------------------------------------------------------------------------------

BAND_ARRAYS = (
    "epochs",
    "accuracy",
    "cross_entropy",
    "agreement",
    "consistency",
    "consistency_correct",
    "reference_epochs",
    "sample_consistency",
    "sample_consistency_correct",
)


def write_band(result: BandResult, path: str | Path, provenance: Mapping, threshold: float) -> None:
    """One composite HDF5 file: band matrices, per-sample consistency, memory window."""
    window, censored = memory_window(result, threshold)
    with atomic_h5(path, provenance) as f:
        save_arrays(f, {name: getattr(result, name) for name in BAND_ARRAYS})
        save_arrays(f, {"memory_window": window, "memory_window_censored": censored})
        f.attrs.update(window=result.window, threshold=threshold, peak_rss_mb=result.peak_rss_mb)


def read_band(path: str | Path) -> BandResult:
    with open_h5(path, BAND_ARRAYS, attrs=("window", "peak_rss_mb")) as f:
        arrays = load_arrays(f)
        return BandResult(
            window=int(f.attrs["window"]),
            peak_rss_mb=float(f.attrs["peak_rss_mb"]),
            **{name: arrays[name] for name in BAND_ARRAYS},
        )


def memory_window_frame(files: Iterable[tuple[Mapping[str, Any], str | Path]]) -> pd.DataFrame:
    """Memory window W(t) of composite files, each given with its labels (e.g. run, eval_set, depth).

    One row per file and analysed epoch: the labels, epoch, memory_window and censored (the window
    reached the band's edge or epoch 0, so it is a lower bound).
    """
    frames = []
    for labels, path in files:
        with open_h5(path, MEMORY_WINDOW_ENTRIES) as f:
            frames.append(
                pd.DataFrame(
                    {
                        **labels,
                        "epoch": f["epochs"][()],
                        "memory_window": f["memory_window"][()],
                        "censored": f["memory_window_censored"][()].astype(bool),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=MEMORY_WINDOW_COLUMNS)


MEMORY_WINDOW_COLUMNS = ["depth", "epoch", "memory_window", "censored"]
MEMORY_WINDOW_ENTRIES = ("epochs", "memory_window", "memory_window_censored")


def run_composite(
    store: CheckpointStore,
    depth: int,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window: int | None,
    stride: int,
    reference_epochs: Sequence[int],
    batch_size: int,
    memory_budget_mb: float,
    precision: str,
    device: str,
    progress: bool,
) -> BandResult:
    """The composite analysis of one run at one depth on one evaluation set."""
    epochs = strided_epochs(store.epochs, stride)
    refs = [min(epochs, key=lambda e: abs(e - r)) for r in reference_epochs] or [epochs[-1]]
    stacked = {k: v.to(device) for k, v in store.stacked(epochs).items()}
    engine = CompositeEngine(store.build_model().to(device), stacked, depth, precision)
    return composite_band(
        engine,
        epochs,
        x.to(device),
        y.to(device),
        window,
        sorted(set(refs)),
        batch_size,
        memory_budget_mb,
        progress,
    )
