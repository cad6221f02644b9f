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
θ'_m = θ_t − η ∇L_{B_m}(θ_t) on M seeded mini-batches, with batched gradients (torch.func).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from torch.func import functional_call, grad, vmap

from featdyn.io import atomic_path

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
    """Make every BatchNorm of `net` use batch statistics only, so vmap never writes a buffer."""
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
    chunk_size: int = 8,
    dtype: torch.dtype = torch.float64,
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
    Gradients are batched with torch.func (vmap of grad over `chunk_size` mini-batches at a time).
    Returns delta (M, p) float64 and an info dict (reduction, p, seeds, indices, ...).
    """
    n_stages = len(model.stages)
    if not 1 <= depth < n_stages:
        raise ValueError(f"split depth {depth} is not in 1..{n_stages - 1}")
    device = next(model.parameters()).device
    grad_net = without_running_stats(copy.deepcopy(nn.Sequential(*model.stages))).to(dtype).train()
    shallow_net = copy.deepcopy(nn.Sequential(*model.stages[:depth])).to(dtype).eval()
    shallow_params = {name: param.detach() for name, param in shallow_net.named_parameters()}
    trainable = {name: param for name, param in shallow_params.items() if param_requires_grad(model, name)}
    fixed = {name: param.detach() for name, param in grad_net.named_parameters() if name not in trainable}
    grad_buffers = dict(grad_net.named_buffers())
    shallow_buffers = dict(shallow_net.named_buffers())
    probe = probe_x.to(device=device, dtype=dtype)

    def loss(params: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        logits = functional_call(grad_net, {**params, **fixed, **grad_buffers}, (xb,))
        return F.cross_entropy(logits, yb)

    def stepped_features(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        grads = grad(loss)(trainable, xb, yb)
        stepped = {name: trainable[name] - lr * grads[name] for name in trainable}
        return functional_call(shallow_net, {**shallow_params, **stepped, **shallow_buffers}, (probe,))

    indices = minibatch_indices(len(train_x), batch_size, M, seed)
    batched = vmap(stepped_features, randomness="different")
    with torch.no_grad():
        reference = shallow_net(probe)
        reducer, info = feature_reducer(
            tuple(reference.shape[1:]), len(probe), reduce, p_max, projection_seed
        )
        chunks = []
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for start in range(0, M, chunk_size):
                idx = torch.as_tensor(indices[start : start + chunk_size])
                xb = train_x[idx].to(device=device, dtype=dtype)
                yb = train_y[idx].to(device=device, dtype=torch.long)
                chunks.append(reducer(batched(xb, yb) - reference).cpu())
    delta = torch.cat(chunks).numpy().astype(np.float64)
    info.update(
        M=M, depth=depth, lr=lr, batch_size=batch_size, seed=seed, dtype=str(dtype), n_probe=len(probe)
    )
    info["batch_indices"] = indices
    return delta, info
