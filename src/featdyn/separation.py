"""Layer-wise data separation (docs/definitions.md §9): D_l = log(Tr Σ_w / Tr Σ_b), Tr(Σ_w Σ_b⁺), load curves.

Everything is accumulated in float64 from batches, so a layer with many features over many samples never
has to sit in memory at once, and no p×p matrix is ever formed: Σ_b has rank K−1 and its factor U
(p×(K−1)) reduces He & Su's measure to K×K algebra,

    Σ_b = U Uᵀ,  Σ_b⁺ = U (UᵀU)⁺² Uᵀ,  Tr(Σ_w Σ_b⁺) = Tr((UᵀU)⁺² · UᵀΣ_wU).

UᵀΣ_wU needs the class means, hence a second pass over the data (`SeparationAccumulator.begin_second_pass`).

`run_separation` applies `load_curve` to every saved epoch of a trained run (the `separation` rule's
`results/runs/{run}/separation.h5`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import partial

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from featdyn.backoff import Backoff, is_out_of_memory
from featdyn.batching import MIN_ROWS, padded_forward
from featdyn.checkpoints import CheckpointStore
from featdyn.curvature import curvature_of
from featdyn.separation_results import MEASURES
from featdyn.separation_results import read_separation as read_separation
from featdyn.separation_results import write_separation as write_separation

# The files' reader and writer are re-exported: figure jobs import featdyn.separation_results.

ArrayOrTensor = torch.Tensor | np.ndarray


def _as_float64_rows(features: ArrayOrTensor) -> torch.Tensor:
    """Features (n, ...) as a float64 (n, p) CPU tensor."""
    features = torch.as_tensor(features)
    return features.detach().reshape(features.shape[0], -1).to(device="cpu", dtype=torch.float64)


def _as_labels(labels: ArrayOrTensor) -> torch.Tensor:
    return torch.as_tensor(labels).detach().reshape(-1).to(device="cpu", dtype=torch.long)


class SeparationAccumulator:
    """Streaming class statistics of one layer's features, from which `result()` gives the measures.

    First pass: call `update` on every batch (per-class counts, means and sums of squared deviations,
    merged with Chan's parallel formula, so no cancellation between large means and small spreads).
    Optional second pass, for He & Su's measure: call `begin_second_pass()`, then `update` again on the
    same batches; it accumulates the within-class scatter projected on the K class-mean directions.
    """

    def __init__(self, n_classes: int, p: int) -> None:
        self.n_classes = n_classes
        self.p = p
        self.counts = torch.zeros(n_classes, dtype=torch.float64)
        self.means = torch.zeros(n_classes, p, dtype=torch.float64)
        self.sq_dev = torch.zeros(n_classes, dtype=torch.float64)
        self._directions: torch.Tensor | None = None  # (p, K): μ_k − μ, fixed for the second pass
        self._projected_scatter = torch.zeros(n_classes, n_classes, dtype=torch.float64)
        self._second_pass_count = 0

    def update(self, features: ArrayOrTensor, labels: ArrayOrTensor) -> None:
        """Add a batch: features (b, ...) with b labels in [0, n_classes)."""
        x, y = _as_float64_rows(features), _as_labels(labels)
        if x.shape[1] != self.p:
            raise ValueError(f"expected {self.p} features per sample, got {x.shape[1]}")
        if self._directions is None:
            self._merge_batch_moments(x, y)
        else:
            self._add_projected_scatter(x, y)

    def _merge_batch_moments(self, x: torch.Tensor, y: torch.Tensor) -> None:
        counts_b = torch.bincount(y, minlength=self.n_classes).to(torch.float64)
        sums_b = torch.zeros_like(self.means).index_add_(0, y, x)
        means_b = sums_b / counts_b.clamp(min=1)[:, None]
        sq_dev_b = torch.zeros_like(self.sq_dev).index_add_(0, y, (x - means_b[y]).square().sum(1))
        total = self.counts + counts_b
        weight_b = counts_b / total.clamp(min=1)
        delta = means_b - self.means
        self.sq_dev += sq_dev_b + delta.square().sum(1) * self.counts * weight_b
        self.means += delta * weight_b[:, None]
        self.counts = total

    def _add_projected_scatter(self, x: torch.Tensor, y: torch.Tensor) -> None:
        z = (x - self.means[y]) @ self._directions
        self._projected_scatter += z.T @ z
        self._second_pass_count += x.shape[0]

    def begin_second_pass(self) -> None:
        """Freeze the class means; later `update` calls feed the He–Su projection."""
        self._directions = (self.means - self._global_mean()).T.contiguous()

    def _global_mean(self) -> torch.Tensor:
        return (self.counts @ self.means) / self.counts.sum()

    def result(self) -> dict[str, float]:
        """tr_within, tr_between, D and he_su (NaN unless a complete second pass was made)."""
        n = float(self.counts.sum())
        tr_within = float(self.sq_dev.sum()) / n
        tr_between = float(self.counts @ (self.means - self._global_mean()).square().sum(1)) / n
        with np.errstate(divide="ignore"):
            d = float(np.log(np.float64(tr_within) / np.float64(tr_between)))
        complete = self._directions is not None and self._second_pass_count == n
        he_su = self._he_su(n) if complete else float("nan")
        return {"tr_within": tr_within, "tr_between": tr_between, "D": d, "he_su": he_su}

    def _he_su(self, n: float) -> float:
        present = (self.counts > 0).numpy()
        sqrt_w = np.sqrt(self.counts.numpy()[present] / n)
        if sqrt_w.size < 2:
            return 0.0
        # U = D·diag(√w) has the null vector √w; an orthonormal basis Q of √w⊥ gives the rank-(K'−1) factor.
        basis = np.linalg.qr(np.column_stack([sqrt_w, np.eye(sqrt_w.size)[:, :-1]]))[0][:, 1:]
        reduce = sqrt_w[:, None] * basis  # (K', K'−1): U Q = D · reduce
        directions = self._directions.numpy()[:, present]
        gram = reduce.T @ (directions.T @ directions) @ reduce  # (UQ)ᵀ(UQ)
        within = reduce.T @ (self._projected_scatter.numpy()[np.ix_(present, present)] / n) @ reduce
        evals, evecs = np.linalg.eigh(gram)
        keep = evals > evals.max() * 1e-12
        inv_sq = (evecs[:, keep] / evals[keep] ** 2) @ evecs[:, keep].T
        return float(np.trace(inv_sq @ within))


def separation_measures(features: ArrayOrTensor, labels: ArrayOrTensor, n_classes: int) -> dict[str, float]:
    """tr_within, tr_between, D = log(tr_within / tr_between) and he_su = Tr(Σ_w Σ_b⁺) of one feature set."""
    x = _as_float64_rows(features)
    acc = SeparationAccumulator(n_classes, x.shape[1])
    acc.update(x, labels)
    acc.begin_second_pass()
    acc.update(x, labels)
    return acc.result()


def stage_outputs(model: nn.Module, x: torch.Tensor) -> Iterator[torch.Tensor]:
    """The input, then the output of every stage in order."""
    yield x
    for stage in model.stages:
        x = stage(x)
        yield x


def _layer_output(model: nn.Module, x: torch.Tensor, *, layer: int) -> torch.Tensor:
    """The input (layer 0) or the output of stage `layer`."""
    for stage in model.stages[:layer]:
        x = stage(x)
    return x


def _batch_layers(model: nn.Module, batch: torch.Tensor, rows: Backoff) -> Iterator[torch.Tensor]:
    """The input and every stage's output on `batch`, layer by layer, each for the whole batch.

    While `rows.size` covers the batch, the stages run once. After a device out-of-memory error the
    remaining layers are computed on pieces of `rows.size` samples (each layer from the input again)
    and concatenated, so every layer still arrives whole and the accumulated statistics are unchanged.
    """
    done = 0
    while True:
        try:
            if rows.size >= len(batch):
                for layer, features in enumerate(stage_outputs(model, batch)):
                    if layer >= done:
                        yield features
                        done += 1
            else:
                for layer in range(done, len(model.stages) + 1):
                    layer_of = partial(_layer_output, model, layer=layer)
                    yield torch.cat(
                        [padded_forward(layer_of, piece).cpu() for piece in batch.split(rows.size)]
                    )
                    done += 1
            return
        except Exception as error:
            if not is_out_of_memory(error) or rows.size <= rows.minimum:
                raise
            rows.halve(error)


@torch.no_grad()
def load_curve(
    model: nn.Module, x: ArrayOrTensor, y: ArrayOrTensor, n_classes: int, batch_size: int = 1024
) -> dict[str, np.ndarray]:
    """D, he_su, tr_within and tr_between at l = 0 (input) … K (output of stage K), in eval mode.

    On a device out-of-memory error the forward passes of a batch shrink (`featdyn.backoff`); the
    statistics are still accumulated per batch of `batch_size`, so the result is the same.
    """
    x, y = torch.as_tensor(x), _as_labels(y)
    device = next(model.parameters(), torch.empty(0)).device
    was_training = model.training
    model.eval()
    accumulators: list[SeparationAccumulator] = []
    rows = Backoff("separation: samples per forward pass", batch_size, MIN_ROWS)
    try:
        for second_pass in (False, True):
            for start in range(0, len(x), batch_size):
                batch = x[start : start + batch_size].to(device)
                labels = y[start : start + batch_size]
                for layer, features in enumerate(_batch_layers(model, batch, rows)):
                    if layer == len(accumulators):
                        accumulators.append(SeparationAccumulator(n_classes, features[0].numel()))
                    accumulators[layer].update(features, labels)
            if not second_pass:
                for acc in accumulators:
                    acc.begin_second_pass()
    finally:
        model.train(was_training)
    results = [acc.result() for acc in accumulators]
    return {key: np.array([r[key] for r in results]) for key in results[0]}


# --- load curves of a trained run over its saved epochs ----------------------------------------


def run_separation(
    store: CheckpointStore,
    eval_sets: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    epochs: Sequence[int],
    *,
    batch_size: int = 1024,
    include_output: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, dict[str, np.ndarray]]:
    """Load curves at every epoch in `epochs` on every evaluation set (inputs, true labels).

    Per set: each measure of `MEASURES` as (n_epochs, K + 1) and `curvature` of D per epoch (n_epochs,).
    """
    n_classes = int(store.model_spec["classes"])
    curves: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in eval_sets}
    for epoch in tqdm(epochs, desc=store.path.parent.name, unit="epoch", disable=not progress):
        model = store.model_at(epoch, device)
        for name, (x, y) in eval_sets.items():
            curves[name].append(load_curve(model, x, y, n_classes, batch_size))
    result = {}
    for name, per_epoch in curves.items():
        stacked = {key: np.stack([c[key] for c in per_epoch]) for key in MEASURES}
        result[name] = {**stacked, "curvature": np.asarray(curvature_of(stacked["D"], include_output))}
    return result
