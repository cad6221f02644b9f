"""Sphericity statistics of SGD-noise perturbations (docs/definitions.md §4; paper 1, Sec. 6, App. E).

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

The perturbations themselves come from `featdyn.sgd_noise`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from featdyn.h5files import open_h5
from featdyn.io import atomic_path, load_arrays

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
    import torch  # here, so that figure jobs import this module without torch

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


def top_share_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Tidy top-5 eigenvalue shares (columns run, depth, epoch, rank, share) from the isotropy table."""
    columns = [f"top_share_{i + 1}" for i in range(TOP_K)]
    tidy = table.melt(
        id_vars=["run", "depth", "epoch"], value_vars=columns, var_name="rank", value_name="share"
    )
    tidy["rank"] = tidy["rank"].str.removeprefix("top_share_").astype(int)
    return tidy


ARRAY_KEYS = ("eigenvalues", "isotropic_eigenvalues", "top_shares", "delta", "probe_indices")
"""The arrays of an isotropy file; every scalar is an attribute."""


def read_isotropy(path: str | os.PathLike) -> dict[str, Any]:
    """One checkpoint's isotropy file (`featdyn.sgd_noise.write_isotropy`): attributes and arrays."""
    with open_h5(path, ARRAY_KEYS) as f:
        scalars = {
            key: value.item() if isinstance(value, np.generic) else value for key, value in f.attrs.items()
        }
        return {**scalars, **load_arrays(f)}
