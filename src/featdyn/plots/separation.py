"""Figures of layer-wise data separation: load curves and the noise × nonlinearity phase diagram (Fig. 1)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colors
from numpy.typing import ArrayLike

from featdyn.curvature import curvature
from featdyn.plots import depth_label, set_theme
from featdyn.plots.springblock import (
    CURVATURE_CMAP,
    add_curvature_colorbar,
    curvature_norm,
    plot_curves_over_time,
)

ACCURACY_CMAP = "Greens"


def plot_load_curves(frame: pd.DataFrame, hue: str = "epoch") -> plt.Figure:
    """D_l against layer l, one line per value of `hue` (mean and 95% band over any repeats, e.g. seeds)."""
    set_theme()
    fig, ax = plt.subplots(figsize=(6.0, 4.3), layout="constrained")
    numeric = pd.api.types.is_numeric_dtype(frame[hue])
    sns.lineplot(
        data=frame,
        x="layer",
        y="D",
        hue=hue,
        palette="viridis" if numeric else "tab10",
        marker="o",
        errorbar=("ci", 95),
        ax=ax,
    )
    ax.set(
        xlabel="layer l (0 = input)",
        ylabel="data separation D_l = log(Tr Σ_w / Tr Σ_b)",
        title="Load curves (lower = better separated)",
    )
    ax.set_xticks(np.sort(frame["layer"].unique()))
    ax.legend(title=hue, fontsize=8)
    return fig


def plot_run_separation(
    curves: pd.DataFrame, bends: pd.DataFrame, run: str, stage_labels: Mapping[int, str] | None = None
) -> plt.Figure:
    """Load curves of one run over its saved epochs, one panel per evaluation set, and their curvature.

    `curves`: eval_set, epoch, layer, D (see `featdyn.separation.read_separation`); `bends`: eval_set,
    epoch, curvature; `stage_labels` names layer l ≥ 1 (the output of stage l) on the axis.
    """
    set_theme()
    eval_sets = list(dict.fromkeys(curves["eval_set"]))
    fig, axes = plt.subplots(
        1, len(eval_sets) + 1, figsize=(5.2 * (len(eval_sets) + 1), 4.3), squeeze=False, layout="constrained"
    )
    for ax, name in zip(axes[0], eval_sets, strict=False):
        grid = curves[curves["eval_set"] == name].pivot(index="epoch", columns="layer", values="D")
        plot_curves_over_time(fig, ax, grid.to_numpy(), grid.index.to_numpy(), "epoch")
        ax.set(
            xlabel="layer l (0 = input)",
            ylabel="D_l = log(Tr Σ_w / Tr Σ_b)",
            title=f"Load curves on {name} data",
        )
        layers = grid.columns.to_numpy()
        ax.set_xticks(layers)
        if stage_labels:
            ticks = ["input" if layer == 0 else depth_label(int(layer), stage_labels) for layer in layers]
            ax.set_xticklabels(ticks, rotation=60, ha="right", fontsize=7)
    bend_ax = axes[0, -1]
    sns.lineplot(data=bends, x="epoch", y="curvature", hue="eval_set", marker=".", ax=bend_ax)
    bend_ax.axhline(0.0, color="0.3", linestyle=":", linewidth=1)
    bend_ax.set(
        xlabel="epoch",
        ylabel="curvature (< 0 concave, > 0 convex)",
        title="Load-curve curvature over training",
    )
    bend_ax.legend(title="data")
    fig.suptitle(f"Layer-wise data separation of run {run} (lower D = better separated)")
    return fig


def plot_accuracy_vs_curvature(frame: pd.DataFrame) -> plt.Figure:
    """Test accuracy against load-curve curvature, one panel per noise axis, one point per cell (colour α,
    size the noise level): paper 2's claim is that the most linear curves generalise best.

    Columns: axis, level, alpha, curvature, test_acc (cell means, or one row per seed).
    """
    set_theme()
    means = frame.groupby(["axis", "level", "alpha"], sort=False)[["curvature", "test_acc"]].mean()
    means = means.reset_index()
    axes_names = list(dict.fromkeys(means["axis"]))
    fig, axes = plt.subplots(
        1,
        len(axes_names),
        figsize=(4.6 * len(axes_names), 4.2),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for ax, name in zip(axes[0], axes_names, strict=True):
        panel = means[means["axis"] == name].assign(level_rank=lambda f: f["level"].rank(method="dense"))
        sns.scatterplot(
            data=panel, x="curvature", y="test_acc", hue="alpha", size="level_rank", palette="viridis", ax=ax
        )
        ax.axvline(0.0, color="0.3", linestyle=":", linewidth=1)
        ax.set(xlabel="load-curve curvature", ylabel="test accuracy", title=f"Noise from {name}")
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles, [_legend_label(label) for label in labels], fontsize=7)
    fig.suptitle("Generalisation against load-curve shape (concave < 0 < convex)")
    return fig


def _legend_label(label: str) -> str:
    return {"alpha": "α", "level_rank": "noise level (rank)"}.get(label, label)


def _cell_means(panel: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean curvature and test accuracy over seeds, as (alpha × level) grids."""
    curvature = panel.pivot_table(index="alpha", columns="level", values="curvature", aggfunc="mean")
    accuracy = panel.pivot_table(index="alpha", columns="level", values="test_acc", aggfunc="mean")
    return curvature, accuracy.reindex(index=curvature.index, columns=curvature.columns)


def plot_phase_diagram(frame: pd.DataFrame) -> plt.Figure:
    """One panel per noise axis: test accuracy as background, circles coloured by mean load-curve curvature,
    a star on the cell of highest test accuracy.

    Columns: axis, level, alpha, seed, curvature, test_acc. Levels are placed at equal spacing in their
    sorted order (they may be log-spaced, e.g. learning rates) and labelled with their values.
    """
    set_theme()
    axes_names = list(dict.fromkeys(frame["axis"]))
    curvature_scale = curvature_norm(frame.groupby(["axis", "level", "alpha"])["curvature"].mean().to_numpy())
    accuracy_means = frame.groupby(["axis", "level", "alpha"])["test_acc"].mean()
    accuracy_scale = colors.Normalize(vmin=float(accuracy_means.min()), vmax=float(accuracy_means.max()))
    fig, axes = plt.subplots(
        1,
        len(axes_names),
        figsize=(4.4 * len(axes_names) + 2.5, 4.4),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for ax, name in zip(axes[0], axes_names, strict=True):
        curvature, accuracy = _cell_means(frame[frame["axis"] == name])
        background = ax.imshow(
            accuracy.to_numpy(), origin="lower", aspect="auto", cmap=ACCURACY_CMAP, norm=accuracy_scale
        )
        cols, rows = np.meshgrid(np.arange(curvature.shape[1]), np.arange(curvature.shape[0]))
        circles = ax.scatter(
            cols.ravel(),
            rows.ravel(),
            c=curvature.to_numpy().ravel(),
            cmap=CURVATURE_CMAP,
            norm=curvature_scale,
            s=260,
            edgecolors="0.2",
            linewidths=0.8,
        )
        best_row, best_col = np.unravel_index(np.nanargmax(accuracy.to_numpy()), accuracy.shape)
        ax.scatter(best_col + 0.3, best_row + 0.3, marker="*", s=160, color="gold", edgecolors="k", zorder=3)
        ax.set_xticks(range(curvature.shape[1]), [f"{level:g}" for level in curvature.columns])
        ax.set_yticks(range(curvature.shape[0]), [f"{alpha:g}" for alpha in curvature.index])
        ax.set(xlabel=f"noise level: {name}", title=f"Noise from {name}")
        ax.grid(False)
    axes[0, 0].set_ylabel("LeakyReLU slope α (1 = linear, 0 = ReLU)")
    add_curvature_colorbar(fig, circles, list(axes[0]))
    fig.colorbar(background, ax=list(axes[0]), fraction=0.05, pad=0.02).set_label(
        "test accuracy (background)"
    )
    fig.suptitle("Noise × nonlinearity phase diagram of load-curve curvature")
    return fig


# --- final load curves of the cells along one noise axis (SM Figs. S4, S10) ---------------------


def hidden_layers(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of the input and hidden layers (the output layer, the largest `layer`, left out)."""
    return frame[frame["layer"] < frame["layer"].max()]


def curve_grid(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """(level × layer) grid of `column`, averaged over seeds."""
    return frame.pivot_table(index="level", columns="layer", values=column, aggfunc="mean")


def level_colours(levels: np.ndarray) -> np.ndarray:
    return plt.get_cmap("viridis")(np.linspace(0, 0.9, len(levels)))


def draw_train_test_curves(
    ax: plt.Axes,
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    title: str,
    colours: ArrayLike | None = None,
) -> None:
    """Label → (training, test) load curve D_l: training solid, test dashed, one colour per label."""
    colours = level_colours(np.arange(len(curves))) if colours is None else colours
    for colour, (label, (train, test)) in zip(colours, curves.items(), strict=False):
        ax.plot(np.arange(len(train)), np.asarray(train), "o-", color=colour, label=label)
        ax.plot(np.arange(len(test)), np.asarray(test), "s--", color=colour, alpha=0.8, fillstyle="none")
    ax.plot([], [], "s--", color="0.4", fillstyle="none", label="test data (dashed)")
    ax.set(xlabel="layer l (0 = input)", ylabel="D_l = log(Tr Σ_w / Tr Σ_b)", title=title)
    ax.legend(fontsize=7)


def plot_train_test_load_curves(frame: pd.DataFrame, axis: str, alpha: float) -> plt.Figure:
    """SM Fig. S4: final training (solid) and test (dashed) load curves of the cells along one noise axis
    (mean over seeds), and both curvatures against the level beside the test accuracy.

    `frame`: level, seed, layer, train_D, test_D, test_acc (`featdyn.phase.final_curves` of every cell).
    """
    set_theme()
    frame = hidden_layers(frame)
    train, test = curve_grid(frame, "train_D"), curve_grid(frame, "test_D")
    accuracy = frame.groupby("level")["test_acc"].mean()
    fig, (curve_ax, bend_ax) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    curves = {
        f"{axis} = {level:g}: test acc {accuracy[level]:.3f}": (train.loc[level], test.loc[level])
        for level in train.index
    }
    draw_train_test_curves(
        curve_ax, curves, f"(a) Train (solid) and test (dashed) load curves, α = {alpha:g}"
    )
    levels = train.index.to_numpy(dtype=float)
    positions = np.arange(len(levels))
    bend_ax.plot(positions, curvature(train.to_numpy()), "o-", label="train curvature")
    bend_ax.plot(positions, curvature(test.to_numpy()), "s--", label="test curvature")
    bend_ax.axhline(0.0, color="0.3", linestyle=":", linewidth=1)
    bend_ax.set_xticks(positions, [f"{level:g}" for level in levels])
    bend_ax.set(xlabel=f"noise level: {axis}", ylabel="curvature (< 0 concave, > 0 convex)")
    accuracy_ax = bend_ax.twinx()
    accuracy_ax.plot(positions, accuracy.to_numpy(), "g^:", label="test accuracy")
    accuracy_ax.set_ylabel("test accuracy", color="g")
    accuracy_ax.grid(False)
    handles = bend_ax.get_legend_handles_labels()[0] + accuracy_ax.get_legend_handles_labels()[0]
    bend_ax.legend(handles, [h.get_label() for h in handles], fontsize=8)
    bend_ax.set_title("(b) Curvature of the mean curves and test accuracy")
    fig.suptitle("Training and test load curves bend alike (paper 2, SM Fig. S4)")
    return fig


def draw_metric_curves(ax: plt.Axes, curves: Mapping[str, np.ndarray], ylabel: str, title: str) -> None:
    """One load curve per label, its curvature in the legend."""
    colours = level_colours(np.arange(len(curves)))
    for colour, (label, curve) in zip(colours, curves.items(), strict=True):
        ax.plot(curve, "o-", color=colour, label=f"{label}: κ = {curvature(curve):+.3f}")
    ax.set(xlabel="layer l (0 = input)", ylabel=ylabel, title=title)
    ax.legend(fontsize=7)


def plot_two_metrics(
    frame: pd.DataFrame, linear: Mapping[str, Mapping[str, np.ndarray]], axis: str, alpha: float
) -> plt.Figure:
    """SM Figs. S10-S11: D_l = log(Tr Σ_w / Tr Σ_b) beside log Tr(Σ_w Σ_b⁺) (He & Su) on the final training
    load curves, for the BN MLP cells along one noise axis (top, mean over seeds) and for the linear
    networks (bottom), over the input and hidden layers.

    `frame`: level, seed, layer, train_D, train_log_he_su (`featdyn.phase.final_curves`); `linear`: the
    records of `featdyn.linear_nets.train_linear_net` results (D, he_su over recorded epochs).
    """
    set_theme()
    frame = hidden_layers(frame)
    fig, axes = plt.subplots(2, 2, figsize=(12, 9), layout="constrained")
    for side, (name, column) in enumerate([("D", "train_D"), ("he_su", "train_log_he_su")]):
        grid = curve_grid(frame, column)
        mlp = {f"{axis} = {level:g}": grid.loc[level].to_numpy() for level in grid.index}
        with np.errstate(divide="ignore"):
            nets = {
                label: result["D"][-1][:-1] if name == "D" else np.log(result["he_su"][-1][:-1])
                for label, result in linear.items()
            }
        ylabel = "D_l = log(Tr Σ_w / Tr Σ_b)" if name == "D" else "log Tr(Σ_w Σ_b⁺)"
        draw_metric_curves(axes[0, side], mlp, ylabel, f"BN MLP (α = {alpha:g}): {ylabel}")
        draw_metric_curves(axes[1, side], nets, ylabel, f"Linear networks: {ylabel}")
    fig.suptitle(
        "Two separation metrics: comparable for the BN MLP (Fig. S10), not for linear nets (Fig. S11)"
    )
    return fig
