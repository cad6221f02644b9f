"""Reflected KDE, share at 1.0, Welch's t-test, Table 1, and the consistency-density figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from featdyn.plots import save_figure
from featdyn.plots.consistency import plot_consistency_kdes
from featdyn.stats import reflected_kde, share_at_one, welch_markdown, welch_table, welch_test

FINE_GRID = np.linspace(0.0, 1.0, 4001)


def integral_on_unit_interval(values: np.ndarray, **kwargs) -> float:
    grid, density = reflected_kde(values, grid=FINE_GRID, **kwargs)
    return float(np.trapezoid(density, grid))


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).uniform(size=500),
        np.random.default_rng(1).beta(8.0, 1.0, size=2000),
        np.random.default_rng(2).beta(1.0, 6.0, size=300),
        np.ones(100),
        np.zeros(7),
        np.array([0.0, 1.0, 1.0, 0.5]),
    ],
    ids=["uniform", "piled-at-1", "piled-at-0", "all-ones", "all-zeros", "tiny"],
)
def test_kde_integrates_to_one(values: np.ndarray) -> None:
    assert integral_on_unit_interval(values) == pytest.approx(1.0, abs=1e-4)
    assert integral_on_unit_interval(values, bandwidth=0.2) == pytest.approx(1.0, abs=1e-4)


def test_kde_is_not_halved_at_the_bounds() -> None:
    """A half-normal piled at a bound has twice the density there of the full normal at its centre;
    a KDE without boundary correction would give them equal height."""
    z = np.random.default_rng(3).normal(scale=0.05, size=4000)
    bandwidth = 0.02
    _, centre = reflected_kde(0.5 + z, grid=[0.5], bandwidth=bandwidth)
    _, at_one = reflected_kde(1.0 - np.abs(z), grid=[1.0], bandwidth=bandwidth)
    _, at_zero = reflected_kde(np.abs(z), grid=[0.0], bandwidth=bandwidth)
    assert at_one[0] / centre[0] == pytest.approx(2.0, rel=1e-6)
    assert at_zero[0] / centre[0] == pytest.approx(2.0, rel=1e-6)


def test_kde_handles_degenerate_data_and_bad_input() -> None:
    grid, density = reflected_kde(np.ones(50))
    assert np.all(np.isfinite(density))
    assert np.argmax(density) == grid.size - 1
    with pytest.raises(ValueError):
        reflected_kde([0.5, 1.2])
    with pytest.raises(ValueError):
        reflected_kde([0.5, 0.6], bandwidth="nonsense")


def test_share_at_one() -> None:
    assert share_at_one([1.0, 1.0, 0.5, 1.0 - 1e-12]) == pytest.approx(0.75)
    assert share_at_one(np.zeros(3)) == 0.0


@pytest.mark.parametrize(
    ("n_a", "n_b", "scale_a", "scale_b", "shift"),
    [(10, 10, 1.0, 1.0, 0.0), (5, 40, 0.3, 2.0, 1.0), (200, 35, 1.0, 0.1, -0.2), (3, 4, 5.0, 1.0, 3.0)],
)
def test_welch_matches_scipy(n_a: int, n_b: int, scale_a: float, scale_b: float, shift: float) -> None:
    rng = np.random.default_rng(n_a * 1000 + n_b)
    a = rng.normal(shift, scale_a, n_a)
    b = rng.normal(0.0, scale_b, n_b)
    ours = welch_test(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert ours["t"] == pytest.approx(reference.statistic, rel=1e-12)
    assert ours["df"] == pytest.approx(reference.df, rel=1e-12)
    assert ours["p"] == pytest.approx(reference.pvalue, rel=1e-12)
    assert (ours["n_a"], ours["n_b"]) == (n_a, n_b)


def test_hedges_g_by_hand() -> None:
    result = welch_test([1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0])
    pooled_sd = np.sqrt(5.0 / 3.0)
    assert result["hedges_g"] == pytest.approx(-(1.0 - 3.0 / 23.0) / pooled_sd, rel=1e-12)


def test_welch_pvalues_are_uniform_under_the_null() -> None:
    rng = np.random.default_rng(11)
    pvalues = [welch_test(rng.normal(0, 1, 12), rng.normal(0, 3, 30))["p"] for _ in range(400)]
    assert stats.kstest(pvalues, "uniform").pvalue > 0.01


def toy_consistency_frame(seed: int = 0, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for depth in (1, 2):
        for eval_set in ("test", "gaussian_blur"):
            for condition, (a, b) in {"clean": (12.0, 1.0), "noisy": (3.0, 1.5)}.items():
                values = np.minimum(rng.beta(a, b, n) * 1.05, 1.0)
                rows.append(
                    pd.DataFrame(
                        {"depth": depth, "eval_set": eval_set, "condition": condition, "value": values}
                    )
                )
    return pd.concat(rows, ignore_index=True)


def test_welch_table_and_markdown() -> None:
    frame = toy_consistency_frame()
    table = welch_table(frame)
    assert len(table) == 4
    assert list(table.columns[:2]) == ["depth", "eval_set"]
    assert {"mean_clean", "mean_noisy", "t", "df", "p", "hedges_g"} <= set(table.columns)
    group = frame[(frame.depth == 2) & (frame.eval_set == "test")]
    expected = welch_test(group[group.condition == "clean"].value, group[group.condition == "noisy"].value)
    row = table[(table.depth == 2) & (table.eval_set == "test")].iloc[0]
    assert row["t"] == expected["t"] and row["p"] == expected["p"]
    assert (table["mean_clean"] > table["mean_noisy"]).all() and (table["hedges_g"] > 0).all()

    markdown = welch_markdown(table)
    lines = markdown.strip().splitlines()
    assert len(lines) == 2 + len(table)
    assert lines[0].startswith("| depth | eval set | mean clean | mean noisy |")
    assert "Hedges' g" in lines[0] and "sd" not in lines[0]
    assert all(f"{p:.2e}" in markdown for p in table["p"])


def test_welch_table_without_group_columns() -> None:
    frame = toy_consistency_frame().query("depth == 1 and eval_set == 'test'")[["condition", "value"]]
    table = welch_table(frame)
    assert len(table) == 1 and "depth" not in table.columns


def test_plot_consistency_kdes(tmp_path) -> None:
    frame = toy_consistency_frame().query("depth == 1")
    fig = plot_consistency_kdes(frame, facet="eval_set")
    assert len(fig.axes) == 2
    for ax in fig.axes:
        labels = [text.get_text() for text in ax.get_legend().get_texts()]
        assert len(labels) == 2 and all("share at 1.0" in label for label in labels)
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    save_figure(fig, tmp_path / "consistency.png")
    assert (tmp_path / "consistency.png").stat().st_size > 0
    single = plot_consistency_kdes(frame.drop(columns="eval_set"), facet="eval_set")
    assert len(single.axes) == 1
    plt.close(single)
