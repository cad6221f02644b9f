"""Figures of SGD-noise anisotropy: spectrum (paper Fig. 8), top-5 eigenvalue shares across epochs
(Fig. 15), and anisotropy beside the memory window of the same run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from featdyn.plots import depth_label, set_theme

SGD_COLOR = "#1f77b4"
ISOTROPIC_COLOR = "#7f7f7f"


def positive_with_rank(eigenvalues: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks and values of the strictly positive eigenvalues (a log axis cannot show 0)."""
    eigenvalues = np.sort(np.asarray(eigenvalues, dtype=np.float64))[::-1]
    ranks = np.arange(1, eigenvalues.size + 1)
    keep = eigenvalues > 0
    return ranks[keep], eigenvalues[keep]


def draw_spectrum(ax: plt.Axes, eigs: np.ndarray, iso_eigs: np.ndarray, title: str) -> None:
    """SGD one-step noise spectrum and the isotropic reference on one log-scale panel."""
    for values, label, color, marker in (
        (eigs, "SGD one-step noise", SGD_COLOR, "o"),
        (iso_eigs, "Isotropic Gaussian (equal total variance)", ISOTROPIC_COLOR, "s"),
    ):
        ranks, positive = positive_with_rank(values)
        ax.plot(ranks, positive, marker=marker, markersize=3, linewidth=1.5, color=color, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("Eigenvalue rank")
    ax.set_ylabel("Eigenvalue of the perturbation covariance")
    ax.set_title(title)


def plot_spectrum(eigs: np.ndarray, iso_eigs: np.ndarray, title: str = "") -> plt.Figure:
    """Fig. 8: covariance spectrum of SGD one-step noise against an isotropic Gaussian cloud of equal
    total variance, on a log scale."""
    set_theme()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    draw_spectrum(ax, eigs, iso_eigs, title or "Spectrum of SGD-induced feature noise")
    ax.legend(frameon=True)
    fig.tight_layout()
    return fig


def spectrum_panel_title(result: Mapping[str, Any], depth_labels: Mapping[int, str] | None = None) -> str:
    return (
        f"{result['run']}, epoch {result['epoch']}, depth {depth_label(result['depth'], depth_labels)}\n"
        f"eff. rank {result['effective_rank']:.1f} of p = {result['p']}, "
        f"bootstrap p = {result['bootstrap_p']:.2g}"
    )


def plot_spectra(
    results: Sequence[Mapping[str, Any]], labels: Mapping[str, Mapping[int, str]] | None = None
) -> plt.Figure:
    """Fig. 8 for several runs and depths: one panel per (run, depth), runs in rows, depths in columns.

    Each result holds run, epoch, depth, p, eigenvalues, isotropic_eigenvalues, effective_rank and
    bootstrap_p (as written by `featdyn.isotropy.write_isotropy`); `labels`: run → depth → label.
    """
    set_theme()
    runs = sorted({r["run"] for r in results})
    depths = sorted({r["depth"] for r in results})
    fig, axes = plt.subplots(
        len(runs), len(depths), figsize=(5 * len(depths), 3.9 * len(runs)), squeeze=False
    )
    for result in results:
        ax = axes[runs.index(result["run"]), depths.index(result["depth"])]
        draw_spectrum(
            ax,
            result["eigenvalues"],
            result["isotropic_eigenvalues"],
            spectrum_panel_title(result, (labels or {}).get(result["run"])),
        )
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.suptitle("Spectrum of SGD one-step feature noise vs. an isotropic Gaussian cloud", y=1.04)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def plot_top_eigs(
    frame: pd.DataFrame, title: str = "", depth_labels: Mapping[int, str] | None = None
) -> plt.Figure:
    """Fig. 15: shares of the top-5 eigenvalues of Σ̂ in its trace across epochs.

    `frame` is tidy: columns epoch, rank (1..5), share, and optionally depth (one panel per depth,
    labelled by `depth_labels`).
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
        ax.set_title(
            "Top-5 eigenvalues"
            if depth is None
            else f"Top-5 eigenvalues, depth {depth_label(depth, depth_labels)}"
        )
        ax.get_legend().remove()
    axes[0][0].set_ylim(bottom=0)
    handles, labels = axes[0][0].get_legend_handles_labels()
    axes[0][-1].legend(handles, labels, title="Eigenvalue rank", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_anisotropy_vs_memory(
    anisotropy: pd.DataFrame,
    memory: pd.DataFrame,
    title: str = "",
    depth_labels: Mapping[int, str] | None = None,
) -> plt.Figure:
    """Effective rank of the SGD noise (top) and the memory window (bottom) of one run against epoch.

    `anisotropy`: columns depth, epoch, effective_rank; `memory`: columns depth, epoch, memory_window
    and optionally censored (drawn hollow: a lower bound); it may be empty, the bottom panel then says
    so. One colour per depth, shared by both panels; depths labelled by `depth_labels`.
    """
    set_theme()
    depths = sorted(set(anisotropy["depth"]) | set(memory["depth"]))
    palette = dict(zip(depths, sns.color_palette("deep", len(depths))))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 6), sharex=True)
    for depth, group in anisotropy.sort_values("epoch").groupby("depth"):
        top.plot(
            group["epoch"],
            group["effective_rank"],
            marker="o",
            color=palette[depth],
            label=f"depth {depth_label(depth, depth_labels)}",
        )
    for depth, group in memory.sort_values("epoch").groupby("depth"):
        bottom.plot(group["epoch"], group["memory_window"], marker="s", ms=3, color=palette[depth])
        edge = group[group["censored"]] if "censored" in group else group.iloc[:0]
        bottom.scatter(
            edge["epoch"], edge["memory_window"], s=36, facecolors="white", edgecolors=palette[depth]
        )
    if "censored" in memory and memory["censored"].any():
        bottom.scatter([], [], s=36, facecolors="white", edgecolors="black", label="lower bound (band edge)")
        bottom.legend(loc="lower right")
    if memory.empty:
        bottom.text(
            0.5, 0.5, "no memory window at these depths", ha="center", va="center", transform=bottom.transAxes
        )
    top.set_ylabel("Effective rank\n(tr Σ)² / tr(Σ²)")
    top.set_ylim(bottom=0)
    top.set_title(title or "SGD-noise anisotropy and memory window")
    top.legend(title="Split depth", loc="best")
    bottom.set_ylabel("Memory window (epochs)")
    bottom.set_xlabel("Epoch")
    fig.tight_layout()
    return fig
