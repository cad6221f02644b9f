"""Feature-dynamics figures: trajectories over classification regions (paper Fig. 6), PCA
perturbation (Fig. 14), parameter and feature drift (Fig. 11), frozen continuations (Fig. 18)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap, to_rgba_array
from matplotlib.patches import Patch

from featdyn.dynamics_results import PCAPerturbation, RegionGrid, Trajectories
from featdyn.plots import set_theme


def class_palette(n_classes: int) -> np.ndarray:
    """(n_classes, 4) RGBA colours, the same for points and regions."""
    return to_rgba_array(sns.color_palette("tab10" if n_classes <= 10 else "husl", n_classes))


def draw_regions(ax: plt.Axes, regions: RegionGrid, palette: np.ndarray, alpha: float = 0.22) -> None:
    """Classification regions as a pale class-coloured image under the data."""
    dx, dy = np.diff(regions.xs[:2])[0] / 2, np.diff(regions.ys[:2])[0] / 2
    extent = (regions.xs[0] - dx, regions.xs[-1] + dx, regions.ys[0] - dy, regions.ys[-1] + dy)
    ax.imshow(
        regions.classes,
        origin="lower",
        extent=extent,
        cmap=ListedColormap(palette[:, :3]),
        vmin=-0.5,
        vmax=len(palette) - 0.5,
        alpha=alpha,
        aspect="auto",
        interpolation="nearest",
    )
    ax.set(xlim=extent[:2], ylim=extent[2:])


def _class_legend(ax: plt.Axes, palette: np.ndarray, present: np.ndarray) -> None:
    handles = [Patch(color=palette[k], label=str(k)) for k in np.unique(present)]
    ax.legend(handles=handles, title="class", fontsize=7, title_fontsize=8, loc="upper right", ncol=2)


def _age_alpha(n_epochs: int, oldest: float = 0.03, newest: float = 0.6) -> np.ndarray:
    """Opacity per segment: old segments fade out."""
    return oldest + (newest - oldest) * np.linspace(0, 1, max(n_epochs - 1, 1)) ** 2


def plot_trajectories(traj: Trajectories, title: str, n_lines: int = 300, seed: int = 0) -> plt.Figure:
    """Left: feature trajectories (class colour, fading with age) over the final regions; right: epoch T."""
    set_theme()
    n_classes = int(max(traj.labels.max(), traj.regions.classes.max())) + 1
    palette = class_palette(n_classes)
    fig, axes = plt.subplots(1, 2, figsize=(13, 6), sharex=True, sharey=True)
    picks = np.random.default_rng(seed).permutation(traj.features.shape[1])[:n_lines]
    paths = traj.features[:, picks].transpose(1, 0, 2)  # (n, E, 2)
    segments = np.stack([paths[:, :-1], paths[:, 1:]], axis=2).reshape(-1, 2, 2)
    colours = np.repeat(palette[traj.labels[picks]][:, None], paths.shape[1] - 1, axis=1)
    colours[..., 3] = _age_alpha(paths.shape[1])
    final_epoch = int(traj.epochs[-1])
    for ax in axes:
        draw_regions(ax, traj.regions, palette)
        ax.set(xlabel="feature 1", ylabel="feature 2")
    axes[0].add_collection(LineCollection(segments, colors=colours.reshape(-1, 4), linewidths=0.7))
    axes[0].scatter(*paths[:, -1].T, s=5, c=palette[traj.labels[picks]], edgecolors="black", linewidths=0.2)
    axes[0].set_title(
        f"{len(picks)} trajectories, epochs {int(traj.epochs[0])}–{final_epoch} (faint = early)"
    )
    final = traj.features[-1]
    axes[1].scatter(*final.T, s=4, c=palette[traj.labels], alpha=0.7, linewidths=0)
    accuracy = np.mean(traj.final_prediction == traj.labels)
    axes[1].set_title(f"epoch {final_epoch}: {len(final)} samples, train accuracy {accuracy:.2f}")
    _class_legend(axes[1], palette, traj.labels)
    fig.suptitle(
        f"2-D features h^(t)(x) over the regions of g^({final_epoch}) (depth {traj.depth}) — {title}"
    )
    fig.tight_layout()
    return fig


def plot_pca_perturbation(
    result: PCAPerturbation, title: str, n_points: int = 3000, seed: int = 0
) -> plt.Figure:
    """Left: agreement with f^(T) against the noise magnitude per epoch τ; right: perturbed features
    of the window in the top-2 PC plane over the regions of g^(T) on that plane."""
    set_theme()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1, 1.15]})
    ax = axes[0]
    colours = sns.color_palette("viridis", len(result.epochs))
    for colour, values in zip(colours, result.agreement.T):
        ax.plot(result.magnitudes, values, color=colour, lw=0.8, alpha=0.8)
    ax.plot(
        result.magnitudes, result.agreement.mean(1), color="black", lw=2.2, marker="o", label="mean over τ"
    )
    positive = result.magnitudes[result.magnitudes > 0]
    if len(positive):
        ax.set_xscale("symlog", linthresh=float(positive.min()))
    unit = "× PC std" if result.scale == "pc_std" else "feature units"
    ax.set(
        xlabel=f"noise magnitude a ({unit})",
        ylabel="agreement with f^(T)(x)",
        ylim=(-0.02, 1.02),
        title=f"epochs τ = {int(result.epochs[0])}…{int(result.epochs[-1])} (colour: τ, yellow = late)",
    )
    ax.legend(loc="lower left")
    ax = axes[1]
    palette = class_palette(int(max(result.labels.max(), result.regions.classes.max())) + 1)
    draw_regions(ax, result.regions, palette)
    n_epochs, n = result.perturbed_coords.shape[:2]
    flat = np.random.default_rng(seed).permutation(n_epochs * n)[:n_points]
    tau, sample = np.divmod(flat, n)
    points = result.perturbed_coords[tau, sample]
    differs = result.perturbed_prediction[tau, sample] != result.reference_prediction[sample]
    ax.scatter(*points.T, s=5, c=palette[result.labels[sample]], alpha=0.6, linewidths=0)
    ax.scatter(*points[differs].T, s=10, marker="x", color="black", linewidths=0.5, label="class ≠ f^(T)(x)")
    ax.set(
        xlabel="PC 1",
        ylabel="PC 2",
        title=f"perturbed features, a = {result.figure_magnitude:g}: share kept {1 - differs.mean():.2f}",
    )
    ax.legend(loc="lower left", fontsize=8)
    _class_legend(ax, palette, result.labels)
    fig.suptitle(
        f"PCA perturbation at depth {result.depth}, classified by g^({int(result.epochs[-1])}) — {title}"
    )
    fig.tight_layout()
    return fig


def plot_drift(parameters: pd.DataFrame, features: pd.DataFrame) -> plt.Figure:
    """Relative parameter drift per stage and feature drift per depth against the epoch, per run."""
    set_theme()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for ax, frame, hue, what in (
        (axes[0], parameters, "stage", "||θ_t − θ_T|| / ||θ_T|| (stage parameters)"),
        (axes[1], features, "depth", "mean_x ||h^(t)(x) − h^(T)(x)|| / ||h^(T)(x)||"),
    ):
        sns.lineplot(
            frame, x="epoch", y="drift", hue=hue, style="run", palette="crest", ax=ax, legend="full", lw=1.4
        )
        ax.set(ylabel="relative drift", title=what, ylim=(0, None))
        ax.legend(fontsize=8, ncol=2)
    fig.suptitle(
        "Parameters and features keep moving after the loss settles (drift towards the final epoch T)"
    )
    fig.tight_layout()
    return fig


def plot_freeze(curves: pd.DataFrame, from_epoch: int, title: str) -> plt.Figure:
    """Test accuracy of the original run and of its continuations from epoch k with stages ≤ d frozen.

    `curves` has columns network, epoch, test_acc; network "original" is the whole run.
    """
    set_theme()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1, 1.4]})
    networks = [n for n in curves["network"].unique() if n != "original"]
    palette = dict(zip(networks, sns.color_palette("rocket", len(networks))))
    for ax, start in ((axes[0], None), (axes[1], from_epoch)):
        original = curves[curves["network"] == "original"]
        if start is not None:
            original = original[original["epoch"] >= start]
        ax.plot(original["epoch"], original["test_acc"], color="0.6", lw=3, label="original run", zorder=1)
        for name in networks:
            sub = curves[curves["network"] == name]
            ax.plot(
                sub["epoch"], sub["test_acc"], color=palette[name], lw=1.3, marker="o", ms=2.5, label=name
            )
        ax.axvline(from_epoch, color="black", ls=":", lw=0.8)
        ax.set(xlabel="epoch", ylabel="test accuracy")
    axes[0].set_title("whole run (dotted: continuation start k)")
    axes[1].set_title(f"continuations from epoch k = {from_epoch}")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Freezing shallow stages from epoch {from_epoch} — {title}")
    fig.tight_layout()
    return fig
