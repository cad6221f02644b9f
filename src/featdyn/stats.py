"""Distributions and tests of per-sample consistency (docs/definitions.md §3; paper 1, Sec. 5 and App. E).

* `reflected_kde`: Gaussian KDE on [0, 1] with reflection at both bounds, so that the mass piled up at
  c = 1.0 is neither lost outside the interval nor halved at the bound; `share_at_one` is reported
  beside it because a density cannot show a point mass.
* `welch_test`, `welch_table`, `welch_markdown`: Welch's unequal-variance t-test of clean against
  noisy-label training with Hedges' g, and the paper's Table 1 built from a tidy frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

KDE_CHUNK_ELEMENTS = 1 << 22
IMAGE_SHIFTS = np.array([-2.0, 0.0, 2.0])
KERNEL_REACH = 9.0


def scott_bandwidth(values: np.ndarray) -> float:
    """Scott's rule for one dimension, as in scipy.stats.gaussian_kde: sd · n^(-1/5)."""
    return float(np.std(values, ddof=1) * len(values) ** (-0.2)) if len(values) > 1 else 0.0


def silverman_bandwidth(values: np.ndarray) -> float:
    """Silverman's rule as in scipy.stats.gaussian_kde: sd · (3n/4)^(-1/5)."""
    return float(np.std(values, ddof=1) * (0.75 * len(values)) ** (-0.2)) if len(values) > 1 else 0.0


def resolve_bandwidth(values: np.ndarray, bandwidth: str | float, min_bandwidth: float) -> float:
    """A bandwidth from a rule name or a number, never below `min_bandwidth` (degenerate data)."""
    rules = {"scott": scott_bandwidth, "silverman": silverman_bandwidth}
    if isinstance(bandwidth, str):
        if bandwidth not in rules:
            raise ValueError(f"unknown bandwidth rule {bandwidth!r}; use one of {sorted(rules)} or a number")
        bandwidth = rules[bandwidth](values)
    return max(float(bandwidth), min_bandwidth)


def reflected_kde(
    values: Sequence[float] | np.ndarray,
    grid: Sequence[float] | np.ndarray | None = None,
    bandwidth: str | float = "scott",
    min_bandwidth: float = 1e-2,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian KDE of values in [0, 1] with reflection at both bounds; returns (grid, density).

    Each observation v contributes Gaussian kernels at its images v + 2k and -v + 2k (k = -1, 0, 1),
    the method of images for a density on [0, 1] with reflecting bounds: the density integrates to 1
    on [0, 1] (up to Gaussian tails beyond two interval lengths) and is not halved at 0 or 1.
    Images farther than 9 bandwidths from [0, 1] (contributions below 1e-17) are skipped, and repeated
    values (consistency takes few distinct values) are evaluated once, weighted by their count.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("reflected_kde needs at least one value")
    if values.min() < 0.0 or values.max() > 1.0:
        raise ValueError("reflected_kde expects values in [0, 1]")
    grid = np.linspace(0.0, 1.0, 513) if grid is None else np.asarray(grid, dtype=np.float64)
    h = resolve_bandwidth(values, bandwidth, min_bandwidth)
    unique, counts = np.unique(values, return_counts=True)
    images = np.concatenate([unique[:, None] + IMAGE_SHIFTS, -unique[:, None] + IMAGE_SHIFTS], axis=1)
    weights = np.repeat(counts[:, None], images.shape[1], axis=1).astype(np.float64)
    images, weights = images.ravel(), weights.ravel()
    near = np.maximum(-images, images - 1.0) < KERNEL_REACH * h
    images, weights = images[near], weights[near]
    density = np.zeros_like(grid)
    chunk = max(1, KDE_CHUNK_ELEMENTS // max(grid.size, 1))
    for start in range(0, images.size, chunk):
        z = (grid[:, None] - images[None, start : start + chunk]) / h
        density += np.exp(-0.5 * z * z) @ weights[start : start + chunk]
    density /= values.size * h * np.sqrt(2.0 * np.pi)
    return grid, density


def share_at_one(values: Sequence[float] | np.ndarray, atol: float = 1e-9) -> float:
    """Share of values equal to 1.0 (within `atol`): the point mass a density cannot show."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.mean(values >= 1.0 - atol)) if values.size else float("nan")


def hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """Standardised mean difference (a − b) / pooled sd with the small-sample correction J."""
    n_a, n_b = len(a), len(b)
    pooled_var = ((n_a - 1) * np.var(a, ddof=1) + (n_b - 1) * np.var(b, ddof=1)) / (n_a + n_b - 2)
    correction = 1.0 - 3.0 / (4.0 * (n_a + n_b) - 9.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(correction * (np.mean(a) - np.mean(b)) / np.sqrt(pooled_var))


def welch_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Welch's two-sided t-test of mean(a) = mean(b) with Welch–Satterthwaite df and Hedges' g."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if len(a) < 2 or len(b) < 2:
        raise ValueError("welch_test needs at least two values per group")
    n_a, n_b = len(a), len(b)
    se2_a, se2_b = np.var(a, ddof=1) / n_a, np.var(b, ddof=1) / n_b
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (np.mean(a) - np.mean(b)) / np.sqrt(se2_a + se2_b)
        df = (se2_a + se2_b) ** 2 / (se2_a**2 / (n_a - 1) + se2_b**2 / (n_b - 1))
    p = 2.0 * stats.t.sf(np.abs(t), df)
    return {
        "t": float(t),
        "df": float(df),
        "p": float(p),
        "hedges_g": hedges_g(a, b),
        "mean_a": float(np.mean(a)),
        "mean_b": float(np.mean(b)),
        "sd_a": float(np.std(a, ddof=1)),
        "sd_b": float(np.std(b, ddof=1)),
        "n_a": n_a,
        "n_b": n_b,
    }


def welch_table(
    frame: pd.DataFrame,
    by: Sequence[str] = ("depth", "eval_set"),
    value: str = "value",
    condition: str = "condition",
    a: str = "clean",
    b: str = "noisy",
) -> pd.DataFrame:
    """Table 1: Welch's test of condition `a` against `b` per group of the columns `by`.

    `frame` is tidy, one row per sample: the grouping columns (those of `by` present in the frame),
    `condition` and `value`. Columns of the result: the grouping columns, then mean/sd/n of each
    condition, t, df, p and Hedges' g (positive when `a` has the larger mean).
    """
    keys = [column for column in by if column in frame.columns]
    groups = frame.groupby(keys, sort=True) if keys else [((), frame)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        result = welch_test(
            group.loc[group[condition] == a, value].to_numpy(),
            group.loc[group[condition] == b, value].to_numpy(),
        )
        rows.append(
            {
                **dict(zip(keys, key)),
                f"mean_{a}": result["mean_a"],
                f"mean_{b}": result["mean_b"],
                f"sd_{a}": result["sd_a"],
                f"sd_{b}": result["sd_b"],
                f"n_{a}": result["n_a"],
                f"n_{b}": result["n_b"],
                "t": result["t"],
                "df": result["df"],
                "p": result["p"],
                "hedges_g": result["hedges_g"],
            }
        )
    return pd.DataFrame(rows)


def format_cell(column: str, value: object) -> str:
    """Table 1 number formats: p in scientific notation, counts as integers, the rest rounded."""
    if isinstance(value, str) or not np.isscalar(value):
        return str(value)
    if column == "p":
        return f"{value:.2e}"
    if column.startswith("n_") or isinstance(value, (int, np.integer)):
        return f"{int(value)}"
    if column == "df":
        return f"{value:.1f}"
    if column.startswith(("mean_", "sd_")):
        return f"{value:.3f}"
    return f"{value:.2f}"


def header_label(column: str) -> str:
    labels = {"t": "t", "df": "df", "p": "p", "hedges_g": "Hedges' g", "eval_set": "eval set"}
    if column in labels:
        return labels[column]
    stem, _, tail = column.partition("_")
    if stem in {"mean", "sd", "n"} and tail:
        return f"{stem} {tail}"
    return column.replace("_", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of already formatted cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def welch_markdown(table: pd.DataFrame) -> str:
    """Render a `welch_table` as a Markdown table: sds left out, p in scientific notation."""
    columns = [c for c in table.columns if not c.startswith("sd_")]
    rows = (
        [format_cell(c, v) for c, v in zip(columns, row)] for row in table[columns].itertuples(index=False)
    )
    return markdown_table([header_label(c) for c in columns], rows)
