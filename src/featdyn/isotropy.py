"""SGD-noise anisotropy (SPEC.md §4; paper 1, Sec. 6 and App. E).

Statistics of M feature perturbations `delta` (M, p), all in float64:

* spectrum of the centred covariance Σ̂ (via the M×M Gram matrix when M < p), top-5 eigenvalue
  shares, effective rank (tr Σ̂)² / tr(Σ̂²);
* the paper's statistic T = ||p Σ̂ / tr Σ̂ − I||_F with a parametric bootstrap under an isotropic
  Gaussian null whose law depends only on (M, p). Since T² = p² tr(Σ̂²) / (tr Σ̂)² − p, no eigen-
  decomposition is needed for T;
* John's U = p tr(Σ̂²) / (tr Σ̂)² − 1 = T² / p with the Ledoit–Wolf (2002) limit
  (n U − p − 1) / 2 → N(0, 1). Ledoit and Wolf state it for S = XXᵀ/n of n zero-mean observations,
  i.e. a Wishart matrix with n degrees of freedom; the centred covariance of M perturbations has
  n = M − 1 degrees of freedom, so n = M − 1 here. One-sided: large U rejects;
* Chen, Zhang and Zhong (2010): U-statistic estimators T1 of tr Σ and T2 of tr Σ² (unbiased whatever
  the mean, valid for p ≫ M), Û = p T2 / T1² − 1 and M Û / 2 → N(0, 1) under sphericity; one-sided.
  The sums over distinct indices are reduced to Gram-matrix algebra: O(M² p), not O(M⁴).

The one-step protocol `one_step_perturbations` measures Δh_m(x) = h_{θ'_m}(x) − h_{θ_t}(x) for
θ'_m = θ_t − η ∇L_{B_m}(θ_t) on M seeded mini-batches (one batched backward pass each, then the M
stepped shallow parts in a vmap over stacked parameters). `isotropy_at_checkpoint` is the pipeline
stage: one run's checkpoint at one epoch and one split depth, with the run's own learning rate,
batch size and training labels; `write_isotropy` stores it.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from torch.func import functional_call, vmap

from featdyn.checkpoints import CheckpointStore
from featdyn.composite import read_memory_window
from featdyn.config import analysed_runs
from featdyn.data import Arrays, subset_indices, tensor_data
from featdyn.io import atomic_h5, atomic_path, load_arrays, save_arrays
from featdyn.train import TrainSpec

TOP_K = 5
NULL_CHUNK_ELEMENTS = 1 << 22


# --- statistics of a perturbation cloud --------------------------------------------------------


def centred_second_moment(delta: np.ndarray) -> np.ndarray:
    """The smaller of the centred Gram (M×M) and covariance (p×p) matrices, divided by M − 1.

    Both have the same non-zero eigenvalues, trace and Frobenius norm as Σ̂.
    """
    centred = delta - delta.mean(axis=0)
    m, p = delta.shape
    product = centred @ centred.T if m < p else centred.T @ centred
    return product / (m - 1)


def john_test(trace: float, trace_sq: float, m: int, p: int) -> tuple[float, float, float]:
    """John's U, its Ledoit–Wolf z-score with n = M − 1, and the upper one-sided p-value."""
    u = p * trace_sq / trace**2 - 1.0
    z = ((m - 1) * u - p - 1.0) / 2.0
    return float(u), float(z), float(stats.norm.sf(z))


def czz_trace_estimators(delta: np.ndarray) -> tuple[float, float]:
    """Chen–Zhang–Zhong (2010) unbiased estimators of tr Σ and tr Σ² from the Gram matrix.

    With G = X Xᵀ, G0 = G without its diagonal, r = G0 1, s = 1ᵀ G0 1:
    Σ_{i≠j} G_ij² = ||G0||², Σ_{i,j,k distinct} G_ij G_jk = ||r||² − ||G0||² and
    Σ_{i,j,k,l distinct} G_ij G_kl = s² − 4 ||r||² + 2 ||G0||².
    """
    m = delta.shape[0]
    x = delta - delta.mean(axis=0)  # the estimators are translation invariant; centring helps rounding
    gram = x @ x.T
    diag = np.diag(gram).copy()
    off = gram - np.diag(diag)
    row = off.sum(axis=1)
    f2, r2, s = float(np.sum(off * off)), float(row @ row), float(row.sum())
    p2, p3, p4 = m * (m - 1.0), m * (m - 1.0) * (m - 2.0), m * (m - 1.0) * (m - 2.0) * (m - 3.0)
    trace = diag.sum() / m - s / p2
    trace_sq = f2 / p2 - 2.0 * (r2 - f2) / p3 + (s * s - 4.0 * r2 + 2.0 * f2) / p4
    return float(trace), float(trace_sq)


def czz_test(delta: np.ndarray) -> tuple[float, float, float]:
    """Chen–Zhang–Zhong sphericity test: Û = p T2 / T1² − 1, z = M Û / 2, upper p-value."""
    m, p = delta.shape
    trace, trace_sq = czz_trace_estimators(delta)
    u = p * trace_sq / trace**2 - 1.0
    z = m * u / 2.0
    return float(u), float(z), float(stats.norm.sf(z))


def trace_normalised_statistic(trace: float, trace_sq: float, p: int) -> float:
    """T = ||p Σ̂ / tr Σ̂ − I||_F from tr Σ̂ and tr Σ̂²."""
    return float(np.sqrt(max(p * p * trace_sq / trace**2 - p, 0.0)))


def perturbation_stats(delta: np.ndarray, null: np.ndarray | None = None) -> dict[str, Any]:
    """Spectrum, effective rank, T and the sphericity tests of perturbations `delta` (M, p).

    `eigenvalues` holds the min(M, p) leading eigenvalues of Σ̂, descending (at most M − 1 are
    non-zero). With `null` (from `isotropic_null` for the same M and p) the bootstrap p-value of T is
    added as `bootstrap_p`.
    """
    delta = np.asarray(delta, dtype=np.float64)
    if delta.ndim != 2 or delta.shape[0] < 4:
        raise ValueError(f"delta must be (M, p) with M >= 4, got shape {delta.shape}")
    m, p = delta.shape
    second_moment = centred_second_moment(delta)
    eigenvalues = np.clip(np.linalg.eigvalsh(second_moment)[::-1], 0.0, None)
    trace, trace_sq = float(np.trace(second_moment)), float(np.sum(second_moment**2))
    if trace <= 0.0:
        raise ValueError("the perturbations do not vary: tr Σ̂ = 0")
    john_u, john_z, john_p = john_test(trace, trace_sq, m, p)
    czz_u, czz_z, czz_p = czz_test(delta)
    result: dict[str, Any] = {
        "M": m,
        "p": p,
        "eigenvalues": eigenvalues,
        "total_variance": trace,
        "top_shares": eigenvalues[:TOP_K] / trace,
        "effective_rank": trace**2 / trace_sq,
        "T": trace_normalised_statistic(trace, trace_sq, p),
        "john_U": john_u,
        "john_z": john_z,
        "john_p": john_p,
        "czz_U": czz_u,
        "czz_z": czz_z,
        "czz_p": czz_p,
    }
    if null is not None:
        result["bootstrap_p"] = bootstrap_pvalue(result["T"], null)
    return result


# --- isotropic Gaussian null -------------------------------------------------------------------


def wishart_bartlett_factors(rng: np.random.Generator, count: int, k: int, dof: int) -> np.ndarray:
    """`count` lower-triangular Bartlett factors A with A Aᵀ ~ Wishart_k(dof, I) (needs dof ≥ k).

    A_ii² ~ χ²(dof − i) for i = 0..k−1 and A_ij ~ N(0, 1) below the diagonal, all independent.
    """
    factors = np.tril(rng.standard_normal((count, k, k)), -1)
    diagonal = np.sqrt(rng.chisquare(dof - np.arange(k), size=(count, k)))
    factors.reshape(count, k * k)[:, :: k + 1] = diagonal
    return factors


def null_statistics_chunk(rng: np.random.Generator, count: int, M: int, p: int) -> np.ndarray:
    """T for `count` isotropic Gaussian clouds of M points in p dimensions, drawn in law.

    The centred scatter matrix of such a cloud is Wishart_p(M − 1, I); its non-zero spectrum is that
    of Wishart_k(N, I) with k = min(M − 1, p), N = max(M − 1, p), which is sampled by the Bartlett
    decomposition W = A Aᵀ: k(k + 1)/2 variates and one k×k product per draw instead of M·p variates
    and an M×p product. T needs only tr W = ||A||² and tr W² = ||Aᵀ A||²; the scale cancels.
    """
    k, dof = min(M - 1, p), max(M - 1, p)
    factors = torch.from_numpy(wishart_bartlett_factors(rng, count, k, dof))
    trace = factors.square().sum(dim=(1, 2))
    products = torch.bmm(factors.transpose(1, 2), factors)
    trace_sq = torch.einsum("bij,bij->b", products, products)
    return np.sqrt(np.clip((p * p * trace_sq / trace**2 - p).numpy(), 0.0, None))


def null_cache_path(cache_dir: str | os.PathLike, m: int, p: int, b: int, seed: int) -> Path:
    return Path(cache_dir) / f"isotropic_null_M{m}_p{p}_B{b}_seed{seed}.npy"


def isotropic_null(
    M: int,
    p: int,
    B: int = 2000,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """B draws of T under the isotropic Gaussian null for M points in p dimensions.

    Vectorised over chunks of draws (`null_statistics_chunk`; no Python loop per draw), deterministic
    per (M, p, B, seed), and cached as `.npy` under that key in `cache_dir`.
    """
    if M < 2 or p < 1 or B < 1:
        raise ValueError(f"isotropic_null needs M >= 2, p >= 1 and B >= 1, got M={M}, p={p}, B={B}")
    if cache_dir is not None:
        path = null_cache_path(cache_dir, M, p, B, seed)
        if path.exists():
            return np.load(path)
    rng = np.random.default_rng(seed)
    chunk = max(1, NULL_CHUNK_ELEMENTS // min(M - 1, p) ** 2)
    null = np.concatenate(
        [null_statistics_chunk(rng, min(chunk, B - start), M, p) for start in range(0, B, chunk)]
    )
    if cache_dir is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, null)
    return null


def bootstrap_pvalue(T: float, null: np.ndarray) -> float:
    """Right-tail parametric-bootstrap p-value (1 + #{T_b ≥ T}) / (B + 1)."""
    null = np.asarray(null)
    return float((1 + np.count_nonzero(null >= T)) / (null.size + 1))


def isotropic_reference_spectrum(M: int, p: int, total_variance: float, seed: int = 0) -> np.ndarray:
    """Eigenvalues (descending, min(M, p) of them) of an isotropic Gaussian cloud of M points in p
    dimensions, rescaled so that its sample total variance equals `total_variance` exactly."""
    cloud = np.random.default_rng(seed).standard_normal((M, p))
    eigenvalues = np.clip(np.linalg.eigvalsh(centred_second_moment(cloud))[::-1], 0.0, None)
    return eigenvalues * (total_variance / eigenvalues.sum())


# --- one-step SGD perturbations ----------------------------------------------------------------

Reduce = Literal["gap", "proj"]


def minibatch_indices(n: int, batch_size: int, M: int, seed: int) -> np.ndarray:
    """(M, batch_size) training indices: M independent mini-batches drawn without replacement."""
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} training samples")
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(n, size=batch_size, replace=False) for _ in range(M)])


def without_running_stats(net: nn.Module) -> nn.Module:
    """Make every BatchNorm of `net` use batch statistics only, so no gradient step writes a buffer."""
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.track_running_stats = False
            module.running_mean = None
            module.running_var = None
            module.num_batches_tracked = None
    return net


def random_orthonormal_projection(dim: int, p: int, seed: int) -> torch.Tensor:
    """(dim, p) matrix with orthonormal columns, from a seeded CPU generator (device independent).

    Orthonormal columns map isotropic noise to isotropic noise, so the projection adds no anisotropy.
    """
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(dim, p, generator=generator, dtype=torch.float64)
    return torch.linalg.qr(gaussian).Q


def feature_reducer(
    feature_shape: tuple[int, ...], n_probe: int, reduce: Reduce, p_max: int, projection_seed: int
) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    """A map from features (c, n_probe, *feature_shape) to (c, p), and its description.

    "gap" averages conv maps over their spatial dimensions (one value per channel); "proj" keeps them
    whole. The probe samples' features are then concatenated, probe-major (index = probe · f + j);
    when that vector is longer than `p_max` it is mapped by a fixed seeded orthonormal projection.
    """
    if reduce not in ("gap", "proj"):
        raise ValueError(f"reduce must be 'gap' or 'proj', got {reduce!r}")
    pooled = reduce == "gap" and len(feature_shape) > 1
    per_probe = feature_shape[0] if pooled else int(np.prod(feature_shape))
    raw_dim = n_probe * per_probe
    projection = random_orthonormal_projection(raw_dim, p_max, projection_seed) if raw_dim > p_max else None
    spatial_dims = tuple(range(3, 2 + len(feature_shape)))

    def reducer(features: torch.Tensor) -> torch.Tensor:
        if pooled:
            features = features.mean(dim=spatial_dims)
        flat = features.reshape(features.shape[0], raw_dim)
        return flat if projection is None else flat @ projection.to(flat.device, flat.dtype)

    info = {
        "reduce": reduce,
        "pooled": pooled,
        "projected": projection is not None,
        "projection_seed": projection_seed,
        "feature_shape": feature_shape,
        "features_per_probe": per_probe,
        "raw_dim": raw_dim,
        "p": raw_dim if projection is None else p_max,
        "layout": "probe-major concatenation"
        + (", then orthonormal projection" if projection is not None else ""),
    }
    return reducer, info


def param_requires_grad(model: nn.Module, sequential_name: str) -> bool:
    """Whether the model parameter named `i.rest` inside `nn.Sequential(*model.stages)` is trainable."""
    return model.stages.get_parameter(sequential_name).requires_grad


def minibatch_gradients(
    net: nn.Module,
    params: Mapping[str, torch.Tensor],
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    indices: np.ndarray,
) -> dict[str, torch.Tensor]:
    """Cross-entropy gradients of `params` (a subset of `net`'s parameters) on each mini-batch.

    One batched forward and backward pass per mini-batch (row of `indices`), in `net`'s current mode;
    returns every gradient stacked on a leading mini-batch axis.
    """
    names, tensors = list(params), list(params.values())
    device = tensors[0].device
    rows = []
    for batch in torch.as_tensor(indices, device=train_x.device):
        xb = train_x[batch].to(device=device, dtype=tensors[0].dtype)
        loss = F.cross_entropy(net(xb), train_y[batch].to(device=device, dtype=torch.long))
        rows.append(torch.autograd.grad(loss, tensors))
    return {name: torch.stack([row[i] for row in rows]) for i, name in enumerate(names)}


def one_step_perturbations(
    model: nn.Module,
    depth: int,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    probe_x: torch.Tensor,
    lr: float,
    batch_size: int,
    M: int = 200,
    seed: int = 0,
    reduce: Reduce = "gap",
    p_max: int = 512,
    projection_seed: int = 0,
    chunk_size: int = 50,
    dtype: torch.dtype = torch.float64,
    grad_dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Feature perturbations Δh_m of one plain SGD step on each of M seeded mini-batches.

    From the model's current weights θ_t: θ'_m = θ_t − lr ∇L_{B_m}(θ_t) (cross-entropy, no momentum,
    no weight decay; only trainable parameters move, and only the shallow ones matter for h). The
    gradient is taken with BatchNorm on batch statistics and Dropout active, with an independent
    seeded mask per mini-batch; running statistics are never written. Δh_m = h_{θ'_m}(probe_x) −
    h_{θ_t}(probe_x) for h = stages[:depth] in eval mode (running statistics, no dropout), reduced by
    `feature_reducer`. The paper fixes one probe sample; several are concatenated probe-major.

    Works on copies in `dtype` (float64 by default, so that the difference of two forward passes is
    not rounding noise); the model itself, its buffers, mode and the global RNG state are untouched.
    The gradients may be taken in a cheaper `grad_dtype` (default: `dtype`): they are cast to `dtype`
    before the step, so only the step's direction carries that precision, not the feature difference.
    Each gradient is one batched backward pass (`minibatch_gradients`; torch.func.grad would import
    torch._dynamo, seconds per process, for no speed-up); the M stepped shallow parts are evaluated
    with vmap over stacked parameters, `chunk_size` at a time.
    Returns delta (M, p) float64 and an info dict (reduction, p, seeds, indices, ...).
    """
    n_stages = len(model.stages)
    if not 1 <= depth < n_stages:
        raise ValueError(f"split depth {depth} is not in 1..{n_stages - 1}")
    device = next(model.parameters()).device
    grad_dtype = grad_dtype or dtype
    grad_net = without_running_stats(copy.deepcopy(nn.Sequential(*model.stages))).to(grad_dtype).train()
    shallow_net = copy.deepcopy(nn.Sequential(*model.stages[:depth])).to(dtype).eval()
    shallow_params = {name: param.detach() for name, param in shallow_net.named_parameters()}
    trainable = [name for name in shallow_params if param_requires_grad(model, name)]
    shallow_buffers = dict(shallow_net.named_buffers())
    probe = probe_x.to(device=device, dtype=dtype)

    def features(stepped: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(shallow_net, {**shallow_params, **stepped, **shallow_buffers}, (probe,))

    indices = minibatch_indices(len(train_x), batch_size, M, seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        grads = minibatch_gradients(
            grad_net, {name: grad_net.get_parameter(name) for name in trainable}, train_x, train_y, indices
        )
    with torch.no_grad():
        reference = shallow_net(probe)
        reducer, info = feature_reducer(
            tuple(reference.shape[1:]), len(probe), reduce, p_max, projection_seed
        )
        chunks = []
        for start in range(0, M, chunk_size):
            stepped = {
                name: shallow_params[name] - lr * grads[name][start : start + chunk_size].to(dtype)
                for name in trainable
            }
            chunks.append(reducer(vmap(features)(stepped) - reference).cpu())
    delta = torch.cat(chunks).numpy().astype(np.float64)
    info.update(
        M=M,
        depth=depth,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        dtype=str(dtype),
        grad_dtype=str(grad_dtype),
        n_probe=len(probe),
    )
    info["batch_indices"] = indices
    return delta, info


# --- pipeline stage: one checkpoint, one split depth ---------------------------------------------

PRECISIONS = {"fp32": torch.float32, "fp64": torch.float64}
ARRAY_KEYS = ("eigenvalues", "isotropic_eigenvalues", "top_shares", "delta", "probe_indices")


@dataclass(frozen=True)
class IsotropySettings:
    """The `isotropy` config section (sizes, reduction, seeds), with the defaults of SPEC.md §4."""

    M: int = 200
    n_probe: int = 8
    reduce: Reduce = "gap"
    p_max: int = 512
    B: int = 2000
    seed: int = 0
    chunk_size: int = 50
    grad_precision: str = "fp32"

    @classmethod
    def from_config(cls, section: Mapping[str, Any], default_seed: int = 0) -> IsotropySettings:
        return cls(**{"seed": default_seed, **job_settings(section)})


def job_settings(section: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of the `isotropy` section one checkpoint's job depends on (not runs, epochs, depths)."""
    return {k: v for k, v in section.items() if k in IsotropySettings.__dataclass_fields__}


def analysed_checkpoint_epochs(
    saved: Sequence[int], epochs: Sequence[int] | None, stride: int = 1
) -> list[int]:
    """The configured `epochs`, or else every `stride`-th saved epoch, always ending at the last one."""
    if epochs:
        return sorted(epochs)
    return list(saved)[::-1][::stride][::-1]


def run_isotropy_epochs(config: Mapping[str, Any], run: str) -> list[int]:
    """Checkpoint epochs the `isotropy` section analyses for `run` (its `epochs`, or a stride)."""
    section, run_cfg = config.get("isotropy") or {}, config["runs"][run]
    saved = TrainSpec.from_config(run_cfg, config["recipes"][run_cfg["recipe"]]).saved_epochs()
    return analysed_checkpoint_epochs(saved, section.get("epochs"), section.get("stride", 1))


def isotropy_keys(config: Mapping[str, Any], figure_only: bool = False) -> list[tuple[str, int, int]]:
    """(run, epoch, depth) of every isotropy file, in a fixed order; with `figure_only`, only the
    spectrum figure's epoch (`figure_epoch`, else each run's last analysed epoch)."""
    section = config.get("isotropy") or {}
    keys = []
    for run in analysed_runs(config, "isotropy") if section else []:
        epochs = run_isotropy_epochs(config, run)
        if figure_only:
            figure_epoch = section.get("figure_epoch")
            epochs = [epochs[-1] if figure_epoch is None else figure_epoch]
        keys += [(run, epoch, depth) for epoch in epochs for depth in section["depths"]]
    return keys


def memory_depths(config: Mapping[str, Any], run: str) -> list[int]:
    """The isotropy depths whose memory window the composite stage computes for `run` (maybe none)."""
    composite = config.get("composite") or {}
    if not composite or run not in analysed_runs(config, "composite"):
        return []
    return [d for d in config["isotropy"]["depths"] if d in composite.get("depths", [])]


def learning_rate_at(store: CheckpointStore, epoch: int) -> float:
    """The run's learning rate at `epoch`: the `lr` column of the store's metrics."""
    rows = store.metrics.loc[store.metrics["epoch"] == epoch, "lr"]
    if rows.empty:
        raise KeyError(f"no metrics row for epoch {epoch} in {store.path}")
    return float(rows.iloc[0])


def minibatch_seed(seed: int, epoch: int) -> int:
    """Seed of the M mini-batches at `epoch`: shared by every depth, different for every epoch."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def isotropy_at_checkpoint(
    store: CheckpointStore,
    arrays: Arrays,
    epoch: int,
    depth: int,
    batch_size: int,
    settings: IsotropySettings,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """One-step perturbations of a run's checkpoint at `epoch`, split depth `depth`, and their statistics.

    The gradient uses the run's own training labels (noisy ones for a noisy-label run), its learning
    rate at `epoch` and `batch_size`; the probe inputs are a seeded subset of `n_probe` training samples.
    Returns the `perturbation_stats` of the M perturbations with the bootstrap p-value (null cached
    under `cache_dir`), the isotropic reference spectrum of equal total variance, the perturbations,
    and what made them (epoch, depth, lr, seeds, reduction, seconds).
    """
    start = time.perf_counter()
    data = tensor_data(arrays, device, train_labels=store.labels["train"])
    probe_indices = subset_indices(len(data.y_train), settings.n_probe, settings.seed)
    lr = learning_rate_at(store, epoch)
    batches_seed = minibatch_seed(settings.seed, epoch)
    delta, info = one_step_perturbations(
        store.model_at(epoch, device),
        depth,
        data.x_train,
        data.y_train,
        data.x_train[torch.from_numpy(probe_indices).to(data.x_train.device)],
        lr=lr,
        batch_size=batch_size,
        M=settings.M,
        seed=batches_seed,
        reduce=settings.reduce,
        p_max=settings.p_max,
        projection_seed=settings.seed,
        chunk_size=settings.chunk_size,
        grad_dtype=PRECISIONS[settings.grad_precision],
    )
    null = isotropic_null(settings.M, info["p"], settings.B, settings.seed, cache_dir)
    result = perturbation_stats(delta, null)
    result.update(
        isotropic_eigenvalues=isotropic_reference_spectrum(
            settings.M, info["p"], result["total_variance"], settings.seed
        ),
        delta=delta,
        probe_indices=probe_indices,
        epoch=epoch,
        depth=depth,
        lr=lr,
        batch_size=batch_size,
        B=settings.B,
        null_T_mean=float(null.mean()),
        null_T_q95=float(np.quantile(null, 0.95)),
        minibatch_seed=batches_seed,
        n_probe=len(probe_indices),
        reduce=info["reduce"],
        pooled=info["pooled"],
        projected=info["projected"],
        raw_dim=info["raw_dim"],
        features_per_probe=info["features_per_probe"],
        projection_seed=info["projection_seed"],
        grad_dtype=info["grad_dtype"],
        dtype=info["dtype"],
        seconds=time.perf_counter() - start,
    )
    return result


def write_isotropy(result: Mapping[str, Any], path: str | os.PathLike, provenance: Mapping[str, Any]) -> None:
    """One HDF5 file: the arrays of `ARRAY_KEYS` as datasets, every scalar as an attribute."""
    with atomic_h5(path, provenance) as f:
        save_arrays(f, {key: result[key] for key in ARRAY_KEYS})
        f.attrs.update({key: value for key, value in result.items() if key not in ARRAY_KEYS})


def read_isotropy(path: str | os.PathLike) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        scalars = {
            key: value.item() if isinstance(value, np.generic) else value for key, value in f.attrs.items()
        }
        return {**scalars, **load_arrays(f)}


def isotropy_row(result: Mapping[str, Any], run: str) -> dict[str, Any]:
    """One table row: the run, every scalar statistic and p-value, and the top-5 eigenvalue shares."""
    scalars = {
        k: v for k, v in result.items() if k not in ARRAY_KEYS and k not in ("config", "featdyn_version")
    }
    shares = np.full(TOP_K, np.nan)
    shares[: len(result["top_shares"])] = result["top_shares"]
    return {"run": run, **scalars, **{f"top_share_{i + 1}": share for i, share in enumerate(shares)}}


def top_share_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Tidy top-5 eigenvalue shares (columns run, depth, epoch, rank, share) from the isotropy table."""
    columns = [f"top_share_{i + 1}" for i in range(TOP_K)]
    tidy = table.melt(
        id_vars=["run", "depth", "epoch"], value_vars=columns, var_name="rank", value_name="share"
    )
    tidy["rank"] = tidy["rank"].str.removeprefix("top_share_").astype(int)
    return tidy


def memory_window_frame(bands: Mapping[int, str | os.PathLike]) -> pd.DataFrame:
    """Memory window W(t) of composite files given per split depth.

    Columns depth, epoch, memory_window and censored (the window reached the band's edge or epoch 0,
    so it is a lower bound).
    """
    frames = []
    for depth, path in bands.items():
        epochs, window = read_memory_window(path)
        with h5py.File(path, "r") as f:
            censored = f["memory_window_censored"][()].astype(bool)
        frames.append(
            pd.DataFrame({"depth": depth, "epoch": epochs, "memory_window": window, "censored": censored})
        )
    columns = ["depth", "epoch", "memory_window", "censored"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
