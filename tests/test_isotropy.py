"""Sphericity statistics of SGD-noise perturbations, the isotropic null, and the figures."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from featdyn.isotropy import (
    bootstrap_pvalue,
    czz_trace_estimators,
    isotropic_null,
    isotropic_reference_spectrum,
    perturbation_stats,
)
from featdyn.plots import save_figure
from featdyn.plots.isotropy import plot_anisotropy_vs_memory, plot_spectra, plot_spectrum, plot_top_eigs
from featdyn.reduction import random_orthonormal_projection

# --- statistics ---------------------------------------------------------------------------------


def direct_statistics(delta: np.ndarray) -> tuple[float, np.ndarray]:
    """T and the spectrum from the full p×p covariance, the way the definition reads."""
    p = delta.shape[1]
    covariance = np.cov(delta, rowvar=False)
    normalised = p * covariance / np.trace(covariance)
    return float(np.linalg.norm(normalised - np.eye(p))), np.sort(np.linalg.eigvalsh(covariance))[::-1]


@pytest.mark.parametrize(("m", "p"), [(30, 80), (80, 30), (25, 25)])
def test_gram_route_matches_direct_covariance(m: int, p: int) -> None:
    delta = np.random.default_rng(m + p).standard_normal((m, p)) @ np.diag(np.linspace(0.2, 3.0, p)) + 5.0
    result = perturbation_stats(delta)
    t_direct, eigenvalues_direct = direct_statistics(delta)
    assert result["T"] == pytest.approx(t_direct, rel=1e-10)
    assert result["eigenvalues"].shape == (min(m, p),)
    np.testing.assert_allclose(result["eigenvalues"], eigenvalues_direct[: min(m, p)], rtol=1e-8, atol=1e-10)
    assert result["total_variance"] == pytest.approx(np.trace(np.cov(delta, rowvar=False)), rel=1e-12)
    assert result["effective_rank"] == pytest.approx(p * p / (t_direct**2 + p), rel=1e-10)
    assert result["john_U"] == pytest.approx(t_direct**2 / p, rel=1e-10)
    assert result["top_shares"].shape == (5,) and np.all(np.diff(result["top_shares"]) <= 0)


def test_czz_estimators_match_the_quadruple_sums() -> None:
    """The Gram-matrix algebra equals the U-statistics written as sums over distinct indices."""
    x = np.random.default_rng(4).standard_normal((7, 5)) + 3.0
    n = len(x)
    g = x @ x.T

    def mean_over(r: int, term) -> float:
        tuples = list(itertools.permutations(range(n), r))
        return sum(term(*t) for t in tuples) / len(tuples)

    trace = np.trace(g) / n - mean_over(2, lambda i, j: g[i, j])
    trace_sq = (
        mean_over(2, lambda i, j: g[i, j] ** 2)
        - 2 * mean_over(3, lambda i, j, k: g[i, j] * g[j, k])
        + mean_over(4, lambda i, j, k, m: g[i, j] * g[k, m])
    )
    assert czz_trace_estimators(x) == pytest.approx((trace, trace_sq), rel=1e-10)


def null_pvalues(m: int, p: int, n_sets: int, seed: int) -> pd.DataFrame:
    null = isotropic_null(m, p, B=1000, seed=seed + 1)
    rng = np.random.default_rng(seed)
    results = [perturbation_stats(rng.standard_normal((m, p)) * 0.01 + 1.0, null) for _ in range(n_sets)]
    return pd.DataFrame(results)[["bootstrap_p", "john_p", "czz_p"]]


@pytest.mark.parametrize(("m", "p"), [(50, 20), (20, 400)], ids=["M>p", "p>>M"])
def test_pvalues_are_uniform_under_isotropy(m: int, p: int) -> None:
    pvalues = null_pvalues(m, p, n_sets=300, seed=21)
    for column in pvalues:
        assert stats.kstest(pvalues[column], "uniform").pvalue > 0.01, column
    bootstrap, john = pvalues["bootstrap_p"], pvalues["john_p"]
    assert stats.spearmanr(bootstrap, john).statistic > 0.99
    assert np.mean((bootstrap < 0.05) == (john < 0.05)) > 0.95


def planted_low_rank(m: int, p: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.standard_normal((p, 3)))[0].T
    return rng.standard_normal((m, 3)) * [3.0, 2.0, 1.5] @ directions + 0.1 * rng.standard_normal((m, p))


@pytest.mark.parametrize(("m", "p"), [(200, 64), (40, 500)])
def test_planted_low_rank_is_rejected_by_every_test(m: int, p: int) -> None:
    result = perturbation_stats(planted_low_rank(m, p, seed=5), isotropic_null(m, p, B=2000, seed=0))
    for key in ("bootstrap_p", "john_p", "czz_p"):
        assert result[key] < 0.001, key
    assert result["effective_rank"] < 5
    assert result["top_shares"][:3].sum() > 0.5


def test_null_is_cached_deterministic_and_matches_direct_clouds(tmp_path) -> None:
    null = isotropic_null(30, 12, B=3000, seed=3, cache_dir=tmp_path)
    cached = tmp_path / "isotropic_null_M30_p12_B3000_seed3.npy"
    assert cached.exists() and null.shape == (3000,)
    np.testing.assert_array_equal(np.load(cached), null)
    np.testing.assert_array_equal(isotropic_null(30, 12, B=3000, seed=3), null)
    np.save(cached, null[:5])
    np.testing.assert_array_equal(isotropic_null(30, 12, B=3000, seed=3, cache_dir=tmp_path), null[:5])
    rng = np.random.default_rng(9)
    direct = [perturbation_stats(rng.standard_normal((30, 12)))["T"] for _ in range(1500)]
    assert stats.ks_2samp(null, direct).pvalue > 0.01


def test_bootstrap_pvalue_formula() -> None:
    null = np.array([1.0, 2.0, 3.0, 4.0])
    assert bootstrap_pvalue(2.5, null) == pytest.approx(3 / 5)
    assert bootstrap_pvalue(10.0, null) == pytest.approx(1 / 5)
    assert bootstrap_pvalue(0.0, null) == pytest.approx(1.0)


def test_isotropic_reference_spectrum() -> None:
    eigenvalues = isotropic_reference_spectrum(40, 100, total_variance=7.5, seed=1)
    assert eigenvalues.shape == (40,)
    assert eigenvalues.sum() == pytest.approx(7.5)
    assert np.all(np.diff(eigenvalues) <= 0)
    np.testing.assert_array_equal(eigenvalues, isotropic_reference_spectrum(40, 100, 7.5, seed=1))


def test_orthonormal_projection() -> None:
    q = random_orthonormal_projection(300, 20, seed=0).numpy()
    np.testing.assert_allclose(q.T @ q, np.eye(20), atol=1e-12)
    np.testing.assert_array_equal(q, random_orthonormal_projection(300, 20, seed=0).numpy())


def test_null_cache_is_written_atomically(tmp_path, monkeypatch) -> None:
    """The cache file appears only once complete: it is written under another name, then renamed."""
    final = tmp_path / "isotropic_null_M10_p4_B50_seed0.npy"
    written = []
    real_save = np.save

    def spying_save(handle, array) -> None:
        assert not final.exists() and Path(handle.name) != final and Path(handle.name).parent == tmp_path
        written.append(handle.name)
        real_save(handle, array)

    monkeypatch.setattr("featdyn.isotropy.np.save", spying_save)
    null = isotropic_null(10, 4, B=50, seed=0, cache_dir=tmp_path)
    assert written and final.exists() and not Path(written[0]).exists()
    np.testing.assert_array_equal(np.load(final), null)
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]


# --- figures ------------------------------------------------------------------------------------


def test_isotropy_figures(tmp_path) -> None:
    result = perturbation_stats(planted_low_rank(60, 40, seed=1))
    iso = isotropic_reference_spectrum(60, 40, result["total_variance"], seed=0)
    fig = plot_spectrum(result["eigenvalues"], iso, title="Depth 1, epoch 100")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_title() == "Depth 1, epoch 100"
    assert len(ax.get_legend().get_texts()) == 2
    save_figure(fig, tmp_path / "spectrum.png")

    shares = pd.DataFrame(
        [
            {"epoch": epoch, "rank": rank, "share": 0.5 / rank * (1 + epoch / 400), "depth": depth}
            for epoch in (50, 100, 150, 200)
            for rank in range(1, 6)
            for depth in (1, 2)
        ]
    )
    fig = plot_top_eigs(shares)
    assert len(fig.axes) == 2 and len(fig.axes[-1].get_legend().get_texts()) == 5
    save_figure(fig, tmp_path / "top_eigs.png")
    fig = plot_top_eigs(shares[shares.depth == 1].drop(columns="depth"))
    assert len(fig.axes) == 1
    save_figure(fig, tmp_path / "top_eigs_single.png")

    anisotropy = pd.DataFrame(
        {"depth": [1, 1, 1, 1, 3], "epoch": [40, 10, 20, 30, 40], "effective_rank": [3.0, 9.0, 6.0, 4.0, 2.0]}
    )
    memory = pd.DataFrame(
        {
            "depth": [1] * 4,
            "epoch": [10, 20, 30, 40],
            "memory_window": [5, 10, 20, 30],
            "censored": [True, False, False, True],
        }
    )
    fig = plot_anisotropy_vs_memory(anisotropy, memory, title="run a")
    top, bottom = fig.axes
    assert top.get_title() == "run a" and all(ax.get_ylabel() for ax in fig.axes)
    assert len(top.get_lines()) == 2 and len(bottom.get_lines()) == 1
    np.testing.assert_array_equal(bottom.collections[0].get_offsets(), [[10, 5], [40, 30]])  # lower bounds
    assert top.get_lines()[0].get_color() == bottom.get_lines()[0].get_color()  # depth 1 in both panels
    np.testing.assert_array_equal(top.get_lines()[0].get_xdata(), [10, 20, 30, 40])
    save_figure(fig, tmp_path / "anisotropy_memory.png")
    fig = plot_anisotropy_vs_memory(anisotropy, memory.iloc[:0])
    assert "no memory window" in fig.axes[1].texts[0].get_text()
    save_figure(fig, tmp_path / "anisotropy_no_memory.png")

    panels = [
        {
            **result,
            "isotropic_eigenvalues": iso,
            "run": run,
            "epoch": 100,
            "depth": depth,
            "bootstrap_p": 0.01,
        }
        for run in ("clean", "noisy")
        for depth in (1, 3)
    ]
    fig = plot_spectra(panels)
    assert len(fig.axes) == 4 and all(ax.get_yscale() == "log" for ax in fig.axes)
    assert fig.axes[3].get_title().startswith("noisy, epoch 100, depth 3")
    save_figure(fig, tmp_path / "spectra.png")
    assert all(
        (tmp_path / name).stat().st_size > 0
        for name in ("spectrum.png", "top_eigs.png", "anisotropy_memory.png", "spectra.png")
    )
