"""Composite-network figures: memory heatmaps (paper Fig. 2), memory window (Fig. 3), forgetting
(Fig. 4) and transferability (Fig. 5)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from featdyn.composite_results import BandResult
from featdyn.plots import depth_label, set_theme


def band_to_matrix(result: BandResult, name: str) -> np.ndarray:
    """Band array [k + w, t] → full matrix [s, t] (NaN outside the band)."""
    values = getattr(result, name)
    n = len(result.epochs)
    matrix = np.full((n, n), np.nan)
    for i, k in enumerate(result.offsets):
        t = np.arange(max(0, -k), min(n, n - k))
        matrix[t + k, t] = values[i, t]
    return matrix


def _heatmap(
    ax: plt.Axes, matrix: np.ndarray, epochs: np.ndarray, label: str, cmap: str, vmin=None, vmax=None
):
    extent = (epochs[0] - 0.5, epochs[-1] + 0.5, epochs[0] - 0.5, epochs[-1] + 0.5)
    image = ax.imshow(
        matrix,
        origin="lower",
        extent=extent,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        aspect="auto",
        interpolation="nearest",
    )
    ax.plot(epochs, epochs, color="white", lw=0.6, ls=":")
    ax.set(xlabel="deep epoch t", ylabel="shallow epoch s")
    plt.colorbar(image, ax=ax, label=label, shrink=0.85)


def plot_memory(
    results: Mapping[int, BandResult],
    title: str,
    n_curves: int = 4,
    depth_labels: Mapping[int, str] | None = None,
) -> plt.Figure:
    """Per depth: composite accuracy and CE over (s, t), and accuracy against s for a few fixed t
    (depths labelled by `depth_labels`, e.g. `3 (block1.2)`)."""
    set_theme()
    depths = sorted(results)
    fig, axes = plt.subplots(len(depths), 3, figsize=(15, 3.8 * len(depths)), squeeze=False)
    for row, depth in enumerate(depths):
        result = results[depth]
        epochs = result.epochs
        accuracy = band_to_matrix(result, "accuracy")
        _heatmap(axes[row, 0], accuracy, epochs, "accuracy", "viridis", 0, 1)
        _heatmap(axes[row, 1], band_to_matrix(result, "cross_entropy"), epochs, "cross-entropy", "magma_r")
        label = depth_label(depth, depth_labels)
        axes[row, 0].set_title(f"depth {label}: accuracy of g^(t)(h^(s)(x))")
        axes[row, 1].set_title(f"depth {label}: cross-entropy")
        ax = axes[row, 2]
        picks = np.unique(np.linspace(len(epochs) // 4, len(epochs) - 1, n_curves).astype(int))
        palette = sns.color_palette("crest", len(picks))
        for colour, t in zip(palette, picks):
            ax.plot(epochs, accuracy[:, t], marker="o", ms=3, color=colour, label=f"t = {epochs[t]}")
            ax.axvline(epochs[t], color=colour, lw=0.6, ls=":")
        ax.set(xlabel="shallow epoch s", ylabel="accuracy", ylim=(0, 1.02), title="fixed deep epoch t")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Memory: old shallow, new deep (s < t), new shallow, old deep (s > t) — {title}")
    fig.tight_layout()
    return fig


def plot_memory_window(frame: pd.DataFrame, threshold: float) -> plt.Figure:
    """W_θ(t) against t; `frame` has columns run, depth, eval_set, epoch, memory_window."""
    set_theme()
    sets = sorted(frame["eval_set"].unique())
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4), squeeze=False, sharey=True)
    for ax, eval_set in zip(axes[0], sets):
        sub = frame[frame["eval_set"] == eval_set]
        sns.lineplot(
            data=sub,
            x="epoch",
            y="memory_window",
            hue="depth",
            style="run",
            marker="o",
            ax=ax,
            palette="viridis",
        )
        ax.set(
            xlabel="reference (deep) epoch t",
            ylabel=f"memory window W (epochs, C ≥ {threshold})",
            title=f"{eval_set} set",
        )
    fig.suptitle("Memory window: how far back the deep layers still read old shallow features")
    fig.tight_layout()
    return fig


def _gap_frame(results: Mapping[str, BandResult], name: str, side: int) -> pd.DataFrame:
    """Tidy rows (label, gap, t, value) for the memory (side −1) or transfer (side +1) half of the band."""
    rows = []
    for label, result in results.items():
        values, w, epochs = getattr(result, name), result.window, result.epochs
        for j in range(w + 1):
            for t, value in enumerate(values[w + side * j]):
                if np.isfinite(value):
                    rows.append(
                        (
                            label,
                            epochs[t + side * j] - epochs[t] if side > 0 else epochs[t] - epochs[t - j],
                            epochs[t],
                            value,
                        )
                    )
    return pd.DataFrame(rows, columns=["run", "gap", "t", name])


def plot_gap_decay(results: Mapping[str, BandResult], side: int) -> plt.Figure:
    """Accuracy and cross-entropy of composites as the epoch gap |s − t| widens.

    side = −1: forgetting (s < t, old shallow features read by newer deep layers, paper Fig. 4);
    side = +1: transferability (s > t, newer shallow features read by older deep layers, Fig. 5).
    """
    set_theme()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    acc = _gap_frame(results, "accuracy", side)
    ce = _gap_frame(results, "cross_entropy", side)
    cons = _gap_frame(results, "consistency", side)
    gap_label = "t − s (epochs)" if side < 0 else "s − t (epochs)"
    for ax, frame, name, label in (
        (axes[0], acc, "accuracy", "accuracy"),
        (axes[1], ce, "cross_entropy", "cross-entropy"),
        (axes[2], cons, "consistency", "consistency C(s, t)"),
    ):
        sns.lineplot(data=frame, x="gap", y=name, hue="run", ax=ax, errorbar=("pi", 50))
        ax.set(xlabel=gap_label, ylabel=label)
    axes[0].set_ylim(0, 1.02)
    axes[2].set_ylim(0, 1.02)
    kind = (
        "Forgetting (old shallow s, new deep t)"
        if side < 0
        else "Transferability (new shallow s, old deep t)"
    )
    fig.suptitle(f"{kind}: median over reference epochs t, band = interquartile range")
    fig.tight_layout()
    return fig
