"""Figures of SGD-noise anisotropy: spectrum (paper Fig. 8), top-5 eigenvalue shares across epochs
(Fig. 15), and anisotropy beside the memory window of the same run."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from featdyn.plots import set_theme

SGD_COLOR = "#1f77b4"
ISOTROPIC_COLOR = "#7f7f7f"
MEMORY_COLOR = "#2ca02c"


def positive_with_rank(eigenvalues: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks and values of the strictly positive eigenvalues (a log axis cannot show 0)."""
    eigenvalues = np.sort(np.asarray(eigenvalues, dtype=np.float64))[::-1]
    ranks = np.arange(1, eigenvalues.size + 1)
    keep = eigenvalues > 0
    return ranks[keep], eigenvalues[keep]


def plot_spectrum(eigs: np.ndarray, iso_eigs: np.ndarray, title: str = "") -> plt.Figure:
    """Fig. 8: covariance spectrum of SGD one-step noise against an isotropic Gaussian cloud of equal
    total variance, on a log scale."""
    set_theme()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for values, label, color, marker in (
        (eigs, "SGD one-step noise", SGD_COLOR, "o"),
        (iso_eigs, "Isotropic Gaussian (equal total variance)", ISOTROPIC_COLOR, "s"),
    ):
        ranks, positive = positive_with_rank(values)
        ax.plot(ranks, positive, marker=marker, markersize=3, linewidth=1.5, color=color, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("Eigenvalue rank")
    ax.set_ylabel("Eigenvalue of the perturbation covariance")
    ax.set_title(title or "Spectrum of SGD-induced feature noise")
    ax.legend(frameon=True)
    fig.tight_layout()
    return fig


def plot_top_eigs(frame: pd.DataFrame) -> plt.Figure:
    """Fig. 15: shares of the top-5 eigenvalues of Σ̂ in its trace across epochs.

    `frame` is tidy: columns epoch, rank (1..5), share, and optionally depth (one panel per depth).
    """
    set_theme()
    depths = sorted(frame["depth"].unique()) if "depth" in frame.columns else [None]
    fig, axes = plt.subplots(1, len(depths), figsize=(4.8 * len(depths), 3.8), sharey=True, squeeze=False)
    palette = dict(zip(sorted(frame["rank"].unique()), sns.color_palette("viridis", frame["rank"].nunique())))
    for ax, depth in zip(axes[0], depths):
        data = frame if depth is None else frame[frame["depth"] == depth]
        sns.lineplot(data=data, x="epoch", y="share", hue="rank", palette=palette, marker="o", ax=ax)
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Share of total variance")
        ax.set_title("Top-5 eigenvalues" if depth is None else f"Top-5 eigenvalues, depth {depth}")
        ax.get_legend().remove()
    axes[0][0].set_ylim(bottom=0)
    handles, labels = axes[0][0].get_legend_handles_labels()
    axes[0][-1].legend(handles, labels, title="Eigenvalue rank", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def plot_anisotropy_vs_memory(frame: pd.DataFrame) -> plt.Figure:
    """Effective rank of the SGD noise and the memory window of the same run against epoch.

    `frame`: columns epoch, effective_rank, memory_window (one row per epoch); two stacked panels
    sharing the epoch axis.
    """
    set_theme()
    data = frame.sort_values("epoch")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5.5), sharex=True)
    top.plot(data["epoch"], data["effective_rank"], marker="o", color=SGD_COLOR)
    top.set_ylabel("Effective rank\n(tr Σ)² / tr(Σ²)")
    top.set_title("SGD-noise anisotropy and memory window")
    bottom.plot(data["epoch"], data["memory_window"], marker="s", color=MEMORY_COLOR)
    bottom.set_ylabel("Memory window (epochs)")
    bottom.set_xlabel("Epoch")
    fig.tight_layout()
    return fig
