"""Computable generalization surrogates (docs/definitions.md §12; paper 1, Sec. 7 and App. G).

The paper bounds the class-wise generalization gap by the total variation between the temporally
augmented training features of a class and its test features; both are intractable, so this module
measures computable stand-ins. For class k, split depth d, reference epoch t and window W (saved
epochs τ in [t − W, t], W in epochs):

* A_k = {h^(τ)(x) : τ in window, x training of class k} (augmented), P_k = {h^(t)(x) : x training of
  class k} (plain), T_k = {h^(t)(x) : x test of class k}. A training sample's class is its label in
  the run's own training labels, a test sample's its true label;
* unbiased MMD² (Gretton et al. 2012) of A_k vs T_k and of P_k vs T_k with a Gaussian kernel
  k(u, v) = exp(−||u − v||² / (2σ²)). One bandwidth per class and reference epoch, shared by both
  comparisons and every window: the median heuristic on the pooled A_k ∪ P_k ∪ T_k of the largest
  window, σ = median of the Euclidean distances ||z_i − z_j|| over all pairs i < j of its rows (the
  mean of the two middle values for an even count, as numpy's median), optionally times each of a
  list of multipliers (one MMD² per bandwidth). Permutation p-value p = (1 + #{T_b ≥ T}) / (B + 1).
  A_k holds every training input once per saved τ, so its rows are not independent: the within-A
  mean leaves out the pairs of one input's rows (then the statistic estimates MMD² between the
  augmented and the test distribution without bias), and the p-value of A_k vs T_k comes from one
  seeded τ per input, where a row-level permutation test is valid (`class_surrogate_rows`);
* sliced Wasserstein-2 as in POT's `ot.sliced_wasserstein_distance(p=2)`:
  SW2 = sqrt(mean over L seeded unit directions θ of W2²(θ·A, θ·T)), each W2² exact between the two
  empirical 1-D measures (unequal sizes through their quantile functions on the merged grid);
* the class-wise gap of f^(t): train accuracy − test accuracy, and test − train cross-entropy.

Features are reduced to vectors by the code the isotropy stage uses (`featdyn.reduction`), computed
for every epoch needed at once (`CompositeEngine`, vmapped over the stacked checkpoints) on seeded
per-class subsets of the training and test sets. Every statistic is computed in float64.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats

from featdyn.checkpoints import CheckpointStore
from featdyn.composite import CompositeEngine
from featdyn.data import Arrays, subset_indices, tensor_data
from featdyn.reduction import Reduce, sample_reducer

DTYPE = torch.float64
SURROGATE_COLUMNS = ("mmd2_aug", "mmd2_plain", "sw2_aug", "sw2_plain")
GAP_COLUMNS = ("acc_gap", "ce_gap")


# --- kernel two-sample statistics ----------------------------------------------------------------


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||x_i − y_j||² for rows of x and y by the Gram expansion, clamped at 0 against rounding."""
    gram = x @ y.T
    return (x.square().sum(1)[:, None] + y.square().sum(1)[None, :] - 2.0 * gram).clamp_min_(0.0)


def median_of(values: torch.Tensor) -> torch.Tensor:
    """numpy's median of a flat tensor: the middle value, or the mean of the two middle values."""
    n = values.numel()
    low = torch.kthvalue(values, (n + 1) // 2).values
    high = torch.kthvalue(values, n // 2 + 1).values
    return (low + high) / 2


def median_heuristic(z: torch.Tensor) -> float:
    """σ = median of ||z_i − z_j|| over all pairs i < j of the rows of z (N(N − 1)/2 distances)."""
    if len(z) < 2:
        raise ValueError("the median heuristic needs at least two points")
    sigma = float(median_of(torch.pdist(z.to(DTYPE))))
    if sigma <= 0.0:
        raise ValueError("the median pairwise distance is 0: more than half the pairs coincide")
    return sigma


def permutation_assignments(m: int, n: int, n_permutations: int, seed: int) -> torch.Tensor:
    """(m + n, 1 + B) group indicators: column 0 is the observed split (first m rows in the first
    sample), column b the first sample of the b-th seeded random permutation of the pooled rows."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.rand(n_permutations, m + n, generator=generator).argsort(dim=1)
    permuted = torch.zeros(n_permutations, m + n, dtype=DTYPE).scatter_(1, order[:, :m], 1.0)
    observed = torch.cat([torch.ones(m, dtype=DTYPE), torch.zeros(n, dtype=DTYPE)])
    return torch.cat([observed[None], permuted]).T.contiguous()


def same_group_pairs(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ordered pairs (i, j), i ≠ j, of rows with the same group id: both directions, O(N · largest group)."""
    order = groups.argsort(stable=True)
    _, counts = torch.unique_consecutive(groups[order], return_counts=True)
    sizes = torch.repeat_interleave(counts, counts)
    starts = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    offsets = torch.arange(int(counts.max()), device=groups.device)
    rows = torch.arange(len(groups), device=groups.device)[:, None].expand(-1, len(offsets))
    partners = starts[:, None] + offsets[None]
    keep = (offsets[None] < sizes[:, None]) & (partners != rows)
    return order[rows[keep]], order[partners[keep]]


def mmd2_for_assignments(
    z: torch.Tensor,
    assignments: torch.Tensor,
    bandwidths: Sequence[float],
    block_size: int = 1024,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unbiased MMD² (bandwidths, columns) of the two-sample split of the rows of z in each column.

    For an indicator column a (m ones, n zeros), b = 1 − a and the Gaussian kernel matrix K of the
    pooled rows: aᵀKa, aᵀK1 and 1ᵀK1 give the sums S_aa, S_ab, S_bb over distinct rows (K_ii = 1),
    and MMD² = S_aa / (m(m − 1)) + S_bb / (n(n − 1)) − 2 S_ab / (mn). K is never formed whole: row
    blocks of `block_size` rows give K_R A, so memory is O(block_size · N + N · columns) and the work
    one N × N × columns product per bandwidth.

    With `groups` (N,) the pairs of distinct rows with the same group id are left out of all three
    sums too, and each mean divides by the number of pairs left: the U-statistic over independent
    units when a unit (an input) contributes several rows (its features at several epochs).
    """
    z = z.to(DTYPE)
    z = z - z.mean(0)  # translation invariant; centring limits the Gram expansion's cancellation
    a = assignments.to(z.device, DTYPE)
    total_n, m = len(z), a.sum(0)
    n = total_n - m
    if bool((m < 2).any() or (n < 2).any()):
        raise ValueError("each sample needs at least two points for the unbiased MMD²")
    scales = torch.tensor([-0.5 / s**2 for s in bandwidths], dtype=DTYPE, device=z.device)
    quad = torch.zeros(len(scales), a.shape[1], dtype=DTYPE, device=z.device)
    cross = torch.zeros_like(quad)
    total = torch.zeros(len(scales), dtype=DTYPE, device=z.device)
    for start in range(0, total_n, block_size):
        rows = slice(start, min(start + block_size, total_n))
        sq = squared_distances(z[rows], z)
        local = torch.arange(sq.shape[0], device=z.device)
        sq[local, local + start] = 0.0  # exact zeros on the diagonal, so that K_ii = 1
        for i, scale in enumerate(scales):
            kernel = torch.exp(sq * scale)
            row_sums = kernel.sum(1)
            quad[i] += (a[rows] * (kernel @ a)).sum(0)
            cross[i] += row_sums @ a[rows]
            total[i] += row_sums.sum()
    sums = {"aa": quad - m, "ab": cross - quad, "bb": total[:, None] - 2.0 * cross + quad - n}
    counts = {"aa": m * (m - 1), "ab": m * n, "bb": n * (n - 1)}
    if groups is not None:
        first, second = same_group_pairs(groups.to(z.device))
        kernel = torch.exp((z[first] - z[second]).square().sum(1)[None] * scales[:, None])  # (S, pairs)
        b = 1.0 - a
        for key, left, right in (("aa", a, a), ("ab", a, b), ("bb", b, b)):
            both = left[first] * right[second]  # (pairs, columns)
            sums[key] = sums[key] - kernel @ both
            counts[key] = counts[key] - both.sum(0)
    return sums["aa"] / counts["aa"] + sums["bb"] / counts["bb"] - 2.0 * sums["ab"] / counts["ab"]


def mmd2_unbiased(
    x: torch.Tensor,
    y: torch.Tensor,
    bandwidths: Sequence[float],
    block_size: int = 1024,
    x_groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unbiased MMD² of samples x (m, p) and y (n, p), one value per Gaussian bandwidth σ.

    `x_groups` (m,) marks rows of x that come from one unit (the same input at several epochs): their
    pairs are left out of the within-x mean, which then estimates E k(a, a') for independent a, a'.
    """
    observed = permutation_assignments(len(x), len(y), 0, 0)
    groups = None
    if x_groups is not None:
        x_groups = torch.as_tensor(x_groups, dtype=torch.long)
        groups = torch.cat([x_groups, int(x_groups.max()) + 1 + torch.arange(len(y))])
    return mmd2_for_assignments(torch.cat([x, y]), observed, bandwidths, block_size, groups)[:, 0]


def permutation_pvalues(observed: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    """(1 + #{T_b ≥ T}) / (B + 1) along the last axis of `null`, with T_b ≥ T up to 100 ulp of T
    (a permutation that reproduces the observed split must count, whatever the summation order)."""
    tolerance = 100 * torch.finfo(observed.dtype).eps * observed.abs()
    exceed = (null >= (observed - tolerance)[..., None]).sum(-1)
    return (1.0 + exceed) / (null.shape[-1] + 1.0)


@dataclass(frozen=True)
class MMDTest:
    """Unbiased MMD² and permutation p-value, one entry per bandwidth σ = multiplier · median."""

    median: float
    bandwidths: np.ndarray
    mmd2: np.ndarray
    p_value: np.ndarray
    null: np.ndarray  # (bandwidths, B)


def mmd_test(
    x: torch.Tensor,
    y: torch.Tensor,
    n_permutations: int = 200,
    seed: int = 0,
    multipliers: Sequence[float] = (1.0,),
    block_size: int = 1024,
    median: float | None = None,
) -> MMDTest:
    """Permutation test of x (m, p) against y (n, p) with the unbiased MMD²: observed split and B
    seeded permutations of the pooled rows in one blocked pass (`mmd2_for_assignments`).

    σ = multiplier · `median`; without `median`, the median heuristic on x ∪ y. A given `median` must
    not depend on which pooled rows are in x (then the test stays exact given σ).
    """
    z = torch.cat([x, y]).to(DTYPE)
    median = median_heuristic(z) if median is None else float(median)
    bandwidths = [median * c for c in multipliers]
    assignments = permutation_assignments(len(x), len(y), n_permutations, seed)
    values = mmd2_for_assignments(z, assignments, bandwidths, block_size)
    observed, null = values[:, 0], values[:, 1:]
    return MMDTest(
        median=median,
        bandwidths=np.asarray(bandwidths),
        mmd2=observed.cpu().numpy(),
        p_value=permutation_pvalues(observed, null).cpu().numpy(),
        null=null.cpu().numpy(),
    )


# --- sliced Wasserstein-2 --------------------------------------------------------------------------


def random_directions(dim: int, n_projections: int, seed: int) -> torch.Tensor:
    """(dim, L) seeded unit vectors, uniform on the sphere (normalised Gaussians; CPU generator)."""
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(dim, n_projections, generator=generator, dtype=DTYPE)
    return gaussian / gaussian.norm(dim=0, keepdim=True)


def wasserstein2_squared_1d(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Exact W2² between the uniform empirical measures of u (..., m) and v (..., n), batched.

    W2² = ∫_0^1 (F_u⁻¹(q) − F_v⁻¹(q))² dq. Both quantile functions are steps with jumps at i/m and
    j/n; on the merged grid, written in units of 1/(mn) as the integers i·n and j·m, the interval
    ending at q holds the ⌈q/n⌉-th smallest u and the ⌈q/m⌉-th smallest v.
    """
    m, n = u.shape[-1], v.shape[-1]
    grid = torch.unique(torch.cat([torch.arange(1, m + 1) * n, torch.arange(1, n + 1) * m]))
    widths = torch.diff(grid, prepend=grid.new_zeros(1)).to(DTYPE) / (m * n)
    u_index = ((grid + n - 1) // n - 1).to(u.device)
    v_index = ((grid + m - 1) // m - 1).to(u.device)
    u_sorted, v_sorted = u.to(DTYPE).sort(-1).values, v.to(DTYPE).sort(-1).values
    gap = u_sorted[..., u_index] - v_sorted[..., v_index]
    return gap.square() @ widths.to(u.device)


def sliced_wasserstein2(
    x: torch.Tensor,
    y: torch.Tensor,
    n_projections: int = 128,
    seed: int = 0,
    directions: torch.Tensor | None = None,
) -> float:
    """SW2 = sqrt(mean over directions θ of W2²(θ·x, θ·y)), POT's sliced_wasserstein_distance(p=2).

    `directions` (p, L) overrides the seeded ones (`random_directions(p, n_projections, seed)`).
    """
    if directions is None:
        directions = random_directions(x.shape[1], n_projections, seed)
    directions = directions.to(x.device, DTYPE)
    projected_x, projected_y = (x.to(DTYPE) @ directions).T, (y.to(DTYPE) @ directions).T
    return float(wasserstein2_squared_1d(projected_x, projected_y).mean().sqrt())


# --- the sets A_k, P_k, T_k from a run's checkpoints ------------------------------------------------


def window_epochs(saved: Sequence[int], t: int, window: int) -> list[int]:
    """The saved epochs τ with t − W ≤ τ ≤ t, ascending (t itself must be saved)."""
    if t not in saved:
        raise KeyError(f"reference epoch {t} was not saved; saved: {list(saved)}")
    if window < 0:
        raise ValueError(f"the window must be ≥ 0, got {window}")
    return sorted(e for e in saved if t - window <= e <= t)


def derived_seed(*keys: int) -> int:
    """A 32-bit seed determined by the integer keys (numpy SeedSequence)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


@dataclass(frozen=True)
class ClassSubsets:
    """Seeded per-class subsets: row indices into the training and test sets, and their classes."""

    train: np.ndarray
    train_classes: np.ndarray
    test: np.ndarray
    test_classes: np.ndarray


def class_subsets(
    y_train: np.ndarray, y_test: np.ndarray, classes: int, n_per_class: int | None, seed: int
) -> ClassSubsets:
    """For every class k, `n_per_class` (all, if fewer) of its training and of its test indices.

    Class k of split s (0 train, 1 test) is drawn by `subset_indices` with seed derived from
    (seed, s, k): independent of the other classes and of the subset size of the other split.
    """

    def pick(y: np.ndarray, split: int) -> tuple[np.ndarray, np.ndarray]:
        rows = []
        for k in range(classes):
            members = np.flatnonzero(y == k)
            rows.append(members[subset_indices(len(members), n_per_class, derived_seed(seed, split, k))])
        chosen = np.concatenate(rows)
        return chosen, np.asarray(y)[chosen]

    (train, train_classes), (test, test_classes) = pick(np.asarray(y_train), 0), pick(np.asarray(y_test), 1)
    return ClassSubsets(train, train_classes, test, test_classes)


@torch.no_grad()
def reduced_features(
    engine: CompositeEngine,
    x: torch.Tensor,
    reduce: Reduce,
    p_max: int,
    projection_seed: int,
    batch_size: int = 256,
    epochs_per_call: int = 8,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """h^(τ)(x) for every epoch of the engine, reduced to vectors: (E, n, p) float64, and the reduction.

    Runs the vmapped shallow parts on `batch_size` inputs and `epochs_per_call` epochs at a time and
    reduces each block at once, so unreduced conv maps never accumulate.
    """
    first = engine.shallow(x[:1], slice(0, 1))
    reducer, info = sample_reducer(tuple(first.shape[2:]), reduce, p_max, projection_seed)
    blocks = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        per_epoch = []
        for e in range(0, engine.n_epochs, epochs_per_call):
            h = engine.shallow(xb, slice(e, e + epochs_per_call)).to(DTYPE)
            per_epoch.append(reducer(h.flatten(0, 1)).view(h.shape[0], h.shape[1], -1))
        blocks.append(torch.cat(per_epoch))
    return torch.cat(blocks, dim=1), info


@dataclass
class SurrogateFeatures:
    """Reduced shallow features at depth `depth` of the training and test subsets at every epoch."""

    depth: int
    epochs: list[int]
    train: torch.Tensor  # (E, n_train, p)
    test: torch.Tensor  # (E, n_test, p)
    subsets: ClassSubsets
    reduction: dict[str, Any] = field(default_factory=dict)

    def position(self, epoch: int) -> int:
        return self.epochs.index(epoch)

    def class_sets(self, k: int, t: int, window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(A_k, P_k, T_k) of docs/definitions.md §12; rows of A_k are epoch-major (all inputs at the first
        τ, then at the next, ...)."""
        positions = [self.position(e) for e in window_epochs(self.epochs, t, window)]
        rows = torch.from_numpy(self.subsets.train_classes == k)
        test_rows = torch.from_numpy(self.subsets.test_classes == k)
        here = self.position(t)
        augmented = self.train[positions][:, rows].flatten(0, 1)
        return augmented, self.train[here, rows], self.test[here, test_rows]


def surrogate_features(
    store: CheckpointStore,
    depth: int,
    epochs: Sequence[int],
    x_train: torch.Tensor,
    y_train: np.ndarray,
    x_test: torch.Tensor,
    y_test: np.ndarray,
    classes: int,
    n_per_class: int | None = 200,
    seed: int = 0,
    reduce: Reduce = "gap",
    p_max: int = 512,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> SurrogateFeatures:
    """Features of seeded per-class subsets (`class_subsets`) at every epoch of `epochs`, at once.

    `y_train` are the labels that define a training sample's class (a noisy-label run's own labels for
    the distribution its deep part was trained on); the projection of `proj` is seeded by `seed`.
    """
    epochs = sorted(epochs)
    subsets = class_subsets(y_train, y_test, classes, n_per_class, seed)
    stacked = {k: v.to(device) for k, v in store.stacked(epochs).items()}
    engine = CompositeEngine(store.build_model().to(device), stacked, depth, precision)

    def features(x: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
        inputs = x[torch.from_numpy(rows).to(x.device)].to(device)
        return reduced_features(engine, inputs, reduce, p_max, seed, batch_size)

    train, info = features(x_train, subsets.train)
    test, _ = features(x_test, subsets.test)
    return SurrogateFeatures(depth, epochs, train.cpu(), test.cpu(), subsets, info)


# --- class-wise generalization gap -------------------------------------------------------------------


@torch.no_grad()
def per_sample_outcomes(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Correctness and cross-entropy of every sample under `model` in eval mode (float64, on CPU)."""
    model.eval()
    correct, loss = [], []
    for start in range(0, len(y), batch_size):
        logits = model(x[start : start + batch_size]).to(DTYPE)
        yb = y[start : start + batch_size].to(logits.device)
        correct.append((logits.argmax(1) == yb).to(DTYPE).cpu())
        loss.append(F.cross_entropy(logits, yb, reduction="none").cpu())
    return torch.cat(correct), torch.cat(loss)


def class_means(values: torch.Tensor, y: torch.Tensor, classes: int) -> np.ndarray:
    """Mean of `values` over the samples of each class (NaN for an absent class)."""
    y = y.cpu().long()
    counts = torch.bincount(y, minlength=classes).to(DTYPE)
    sums = torch.zeros(classes, dtype=DTYPE).index_add_(0, y, values.to(DTYPE))
    return (sums / counts).numpy()


def class_gaps(
    model: torch.nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    classes: int,
    batch_size: int = 1024,
) -> pd.DataFrame:
    """Per class k: train and test accuracy and cross-entropy of `model` (f^(t)) on all samples of k,
    acc_gap = train_acc − test_acc and ce_gap = test_ce − train_ce (both positive when overfitting)."""
    train_correct, train_loss = per_sample_outcomes(model, x_train, y_train, batch_size)
    test_correct, test_loss = per_sample_outcomes(model, x_test, y_test, batch_size)
    frame = pd.DataFrame(
        {
            "class": np.arange(classes),
            "train_acc": class_means(train_correct, y_train, classes),
            "test_acc": class_means(test_correct, y_test, classes),
            "train_ce": class_means(train_loss, y_train, classes),
            "test_ce": class_means(test_loss, y_test, classes),
        }
    )
    frame["acc_gap"] = frame["train_acc"] - frame["test_acc"]
    frame["ce_gap"] = frame["test_ce"] - frame["train_ce"]
    return frame


# --- the table ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SurrogateSettings:
    """The keys of config section `surrogates` one job reads (docs/definitions.md §12); defaults are
    the schema's."""

    n_per_class: int | None = 200
    n_permutations: int = 200
    n_projections: int = 128
    bandwidth_multipliers: tuple[float, ...] = (1.0,)
    reduce: Reduce = "gap"
    p_max: int = 512
    seed: int = 0
    batch_size: int = 256
    block_size: int = 1024

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> SurrogateSettings:
        known = {k: v for k, v in section.items() if k in cls.__dataclass_fields__}
        if "bandwidth_multipliers" in known:
            known["bandwidth_multipliers"] = tuple(float(c) for c in known["bandwidth_multipliers"])
        return cls(**known)


def input_groups(n_rows: int, n_inputs: int) -> torch.Tensor:
    """Input of each row of an epoch-major A_k (row r = epoch · n_inputs + input): r mod n_inputs."""
    return torch.arange(n_rows) % n_inputs


def one_epoch_per_input(augmented: torch.Tensor, n_inputs: int, seed: int) -> torch.Tensor:
    """One row per input of an epoch-major A_k, at an epoch drawn uniformly from its window (seeded):
    independent draws from the augmented distribution, so a permutation test against T_k is exact."""
    n_epochs = len(augmented) // n_inputs
    generator = torch.Generator().manual_seed(seed)
    epochs = torch.randint(n_epochs, (n_inputs,), generator=generator)
    return augmented[epochs * n_inputs + torch.arange(n_inputs)]


def class_surrogate_rows(
    features: SurrogateFeatures, k: int, t: int, windows: Sequence[int], settings: SurrogateSettings
) -> list[dict[str, Any]]:
    """One row per window W and bandwidth multiplier: MMD², p-values and SW2 of A_k vs T_k and P_k vs T_k.

    Bandwidth: one σ per class and reference epoch, the median heuristic on the distinct rows of
    A_k ∪ P_k ∪ T_k for the largest window (P_k ⊆ A_k, so A_k ∪ T_k), shared by every window and by
    both comparisons, so that augmented and plain values are measured with the same kernel. The plain
    values depend on (k, t) only and repeat on every window's row.

    A_k holds each training input once per saved τ, and those rows are not independent. So
    `mmd2_aug` is the unbiased MMD² of all of A_k against T_k with the pairs of one input's rows left
    out of the within-A mean (`mmd2_unbiased` with `x_groups`): it estimates MMD² between the
    augmented distribution and the test distribution. A row-level permutation test of all of A_k
    would be anti-conservative; `p_aug` is instead the permutation test of one seeded epoch per
    input (`one_epoch_per_input`, seeded by (seed, t, W, k); its statistic `mmd2_aug_thinned`)
    against T_k. The permutations are seeded by (seed, t, k) and shared by every comparison of the
    class at t, so at W = 0 every `aug` value equals its `plain` one. The SW2 directions are seeded by
    the seed alone: every class, epoch and window is measured along the same directions.
    """
    largest, _, test = features.class_sets(k, t, max(windows))
    median = median_heuristic(torch.cat([largest, test]))
    seed = derived_seed(settings.seed, t, k)
    directions = random_directions(test.shape[1], settings.n_projections, settings.seed)

    def permutation_test(sample: torch.Tensor) -> MMDTest:
        return mmd_test(
            sample,
            test,
            settings.n_permutations,
            seed,
            settings.bandwidth_multipliers,
            settings.block_size,
            median,
        )

    _, plain, _ = features.class_sets(k, t, 0)
    plain_test = permutation_test(plain)
    sw2_plain = sliced_wasserstein2(plain, test, directions=directions)
    rows = []
    for window in windows:
        augmented, _, _ = features.class_sets(k, t, window)
        thinned = one_epoch_per_input(augmented, len(plain), derived_seed(settings.seed, t, window, k))
        aug_test = permutation_test(thinned)
        groups = input_groups(len(augmented), len(plain))
        mmd2_aug = mmd2_unbiased(augmented, test, plain_test.bandwidths, settings.block_size, groups)
        base = {
            "depth": features.depth,
            "epoch": t,
            "window": window,
            "class": k,
            "n_window_epochs": len(augmented) // len(plain),
            "n_A": len(augmented),
            "n_P": len(plain),
            "n_T": len(test),
            "p": test.shape[1],
            "sigma_median": median,
            "sw2_aug": sliced_wasserstein2(augmented, test, directions=directions),
            "sw2_plain": sw2_plain,
        }
        rows += [
            {
                **base,
                "bandwidth": multiplier,
                "mmd2_aug": float(mmd2_aug[i]),
                "mmd2_plain": float(plain_test.mmd2[i]),
                "mmd2_aug_thinned": float(aug_test.mmd2[i]),
                "p_aug": float(aug_test.p_value[i]),
                "p_plain": float(plain_test.p_value[i]),
            }
            for i, multiplier in enumerate(settings.bandwidth_multipliers)
        ]
    return rows


def surrogate_table(
    features: SurrogateFeatures,
    gaps: Mapping[int, pd.DataFrame],
    references: Sequence[int],
    windows: Sequence[int],
    settings: SurrogateSettings,
) -> pd.DataFrame:
    """Tidy table, one row per (reference epoch t, window W, class k, bandwidth multiplier).

    `gaps[t]` is `class_gaps` of f^(t). Columns: depth, epoch, window, class, bandwidth, n_A, n_P, n_T,
    mmd2_aug, mmd2_plain, p_aug, p_plain, sw2_aug, sw2_plain, acc_gap, ce_gap, and mmd2_aug_thinned
    (the statistic behind p_aug, see `class_surrogate_rows`), n_window_epochs, the per-class
    train/test accuracy and cross-entropy, the shared median σ and the dimension p.
    """
    rows = []
    for t in references:
        gap = gaps[t].set_index("class")
        for k in np.unique(features.subsets.train_classes):
            extra = gap.loc[int(k)].to_dict()
            rows += [{**row, **extra} for row in class_surrogate_rows(features, int(k), t, windows, settings)]
    return pd.DataFrame(rows)


def run_surrogates(
    store: CheckpointStore,
    depth: int,
    references: Sequence[int],
    windows: Sequence[int],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    classes: int,
    settings: SurrogateSettings,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> tuple[pd.DataFrame, SurrogateFeatures]:
    """The surrogate table of one run at one split depth, and the features (with the subsets) it used.

    `y_train` defines a training sample's class for A_k, P_k and the training side of the gap: pass the
    run's own training labels (a noisy-label run's noisy ones, the distribution its network was fitted
    to); `y_test` are the true test labels. Features are computed once for the union of all windows;
    the gaps of every f^(t) on the full training and test sets.
    """
    needed = sorted({e for t in references for w in windows for e in window_epochs(store.epochs, t, w)})
    features = surrogate_features(
        store,
        depth,
        needed,
        x_train,
        y_train.cpu().numpy(),
        x_test,
        y_test.cpu().numpy(),
        classes,
        settings.n_per_class,
        settings.seed,
        settings.reduce,
        settings.p_max,
        settings.batch_size,
        device,
        precision,
    )
    gaps = {
        t: class_gaps(
            store.model_at(t, device), x_train.to(device), y_train, x_test.to(device), y_test, classes
        )
        for t in references
    }
    return surrogate_table(features, gaps, references, windows, settings), features


def surrogate_stage(
    store: CheckpointStore,
    arrays: Arrays,
    depth: int,
    references: Sequence[int],
    windows: Sequence[int],
    settings: SurrogateSettings,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """The pipeline stage: `run_surrogates` of one run at one depth, classes of training samples from
    the run's own training labels (`store.labels["train"]`), test classes from the true labels; a
    `seconds` column holds the job's time."""
    start = time.perf_counter()
    data = tensor_data(arrays, device, train_labels=store.labels["train"])
    table, _ = run_surrogates(
        store,
        depth,
        references,
        windows,
        data.x_train,
        data.y_train,
        data.x_test,
        data.y_test,
        data.classes,
        settings,
        device,
    )
    table["seconds"] = time.perf_counter() - start
    return table


def spearman_table(
    table: pd.DataFrame,
    by: Sequence[str] = ("depth", "epoch", "window", "bandwidth"),
    gaps: Sequence[str] = GAP_COLUMNS,
    surrogates: Sequence[str] = SURROGATE_COLUMNS,
) -> pd.DataFrame:
    """Spearman ρ (scipy.stats.spearmanr) of each gap against each surrogate within each group of `by`
    (by default: across the classes of one depth, epoch, window and bandwidth). Columns: the keys of
    `by`, gap, surrogate, rho, p_value, n."""
    rows = []
    for keys, group in table.groupby(list(by), sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        for gap in gaps:
            for surrogate in surrogates:
                result = stats.spearmanr(group[gap], group[surrogate])
                rows.append(
                    {
                        **dict(zip(by, keys)),
                        "gap": gap,
                        "surrogate": surrogate,
                        "rho": float(result.statistic),
                        "p_value": float(result.pvalue),
                        "n": len(group),
                    }
                )
    return pd.DataFrame(rows)


SPEARMAN_SCOPES = {
    "run": ("run", "depth", "window", "bandwidth"),
    "all": ("depth", "window", "bandwidth"),
    "epoch": ("run", "depth", "epoch", "window", "bandwidth"),
}
"""Groups of `surrogate_correlations`: per run over classes × reference epochs, over runs too, and per
run and reference epoch across classes."""


def surrogate_correlations(table: pd.DataFrame) -> pd.DataFrame:
    """`spearman_table` of a multi-run surrogate table in every scope of `SPEARMAN_SCOPES`, stacked,
    with a `scope` column (`run` = "all" in scope `all`, epoch = -1 outside scope `epoch`)."""
    frames = []
    for scope, by in SPEARMAN_SCOPES.items():
        frame = spearman_table(table, by=by)
        if "run" not in by:
            frame.insert(0, "run", "all")
        if "epoch" not in by:
            frame["epoch"] = -1
        frame.insert(0, "scope", scope)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[
        ["scope", "run", "depth", "epoch", "window", "bandwidth", "gap", "surrogate", "rho", "p_value", "n"]
    ]
