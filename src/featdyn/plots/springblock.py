"""Figures of the spring–block model: its phase diagram (paper 2, Fig. 3) and load dynamics (Fig. 4)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import colors

from featdyn.plots import set_theme

CURVATURE_CMAP = "RdBu_r"


def curvature_norm(values: np.ndarray) -> colors.TwoSlopeNorm:
    """Diverging colour scale centred at 0 (linear load curve), symmetric around it."""
    bound = max(float(np.nanmax(np.abs(values))), 1e-12)
    return colors.TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)


def add_curvature_colorbar(
    fig: plt.Figure, mappable: plt.cm.ScalarMappable, ax: plt.Axes | list[plt.Axes]
) -> None:
    """Colorbar for load-curve curvature whose ends say which side is concave and which convex."""
    bar = fig.colorbar(mappable, ax=ax, fraction=0.05, pad=0.03)
    bar.set_label("load-curve curvature (mean 2nd difference)")
    bar.ax.text(
        0.5, -0.02, "concave\n(deep layers\nlearn more)", transform=bar.ax.transAxes, ha="center", va="top"
    )
    bar.ax.text(
        0.5,
        1.02,
        "convex\n(shallow layers\nlearn more)",
        transform=bar.ax.transAxes,
        ha="center",
        va="bottom",
    )


def _cell_edges(centres: np.ndarray) -> np.ndarray:
    """Edges halfway between sorted cell centres, extended by half a step at both ends."""
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middles = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - middles[0]], middles, [2 * centres[-1] - middles[-1]]])


def _mean_load_curve(row: pd.Series, n_blocks: int) -> np.ndarray:
    lengths = row[[f"elongation_{block}" for block in range(1, n_blocks + 1)]].to_numpy(dtype=float)
    return row["y"] - np.concatenate([[0.0], np.cumsum(lengths)])


def curvature_grid(frame: pd.DataFrame) -> pd.DataFrame:
    """Curvature per cell of a phase-diagram table, as an (asymmetry × eps) grid."""
    return frame.pivot_table(index="asymmetry", columns="eps", values="curvature")


def draw_phase(
    ax: plt.Axes, frame: pd.DataFrame, norm: colors.Normalize, title: str
) -> plt.cm.ScalarMappable:
    """Curvature over noise ε × μ_l/μ_r as a heatmap with the linear (κ = 0) contour; returns the mesh."""
    grid = curvature_grid(frame)
    eps, asymmetry = grid.columns.to_numpy(dtype=float), grid.index.to_numpy(dtype=float)
    mesh = ax.pcolormesh(
        _cell_edges(eps),
        _cell_edges(asymmetry),
        grid.to_numpy(),
        cmap=CURVATURE_CMAP,
        norm=norm,
        shading="flat",
    )
    if grid.shape[0] > 1 and grid.shape[1] > 1 and np.nanmin(grid) < 0 < np.nanmax(grid):
        contour = ax.contour(eps, asymmetry, grid.to_numpy(), levels=[0.0], colors="k", linewidths=1.2)
        ax.clabel(contour, fmt={0.0: "linear"}, fontsize=9)
    ax.axhline(1.0, color="0.3", linestyle=":", linewidth=1)
    ax.set(xlabel="noise amplitude ε", ylabel="friction asymmetry μ_l / μ_r", title=title)
    ax.grid(False)
    return mesh


def plot_springblock_phase(frame: pd.DataFrame) -> plt.Figure:
    """Curvature over noise ε × μ_l/μ_r (left) and the mean load curves of the most asymmetric row (right)."""
    set_theme()
    asymmetry = curvature_grid(frame).index.to_numpy(dtype=float)
    fig, (phase_ax, curve_ax) = plt.subplots(
        1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.25, 1]}, layout="constrained"
    )
    norm = curvature_norm(curvature_grid(frame).to_numpy())
    mesh = draw_phase(phase_ax, frame, norm, "(a) Spring–block phase diagram")
    add_curvature_colorbar(fig, mesh, phase_ax)

    n_blocks = sum(column.startswith("elongation_") for column in frame.columns)
    top = frame[frame["asymmetry"] == asymmetry.max()].sort_values("eps")
    top = top.iloc[np.unique(np.linspace(0, len(top) - 1, 6).round().astype(int))]  # at most 6 noise levels
    noise_colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(top)))
    for colour, (_, row) in zip(noise_colours, top.iterrows(), strict=True):
        curve_ax.plot(
            range(n_blocks + 1), _mean_load_curve(row, n_blocks), "o-", color=colour, label=f"ε = {row.eps:g}"
        )
    curve_ax.set(
        xlabel="block l (0 = wall)",
        ylabel="distance to target y − x_l",
        title=f"(b) Final load curves, μ_l / μ_r = {asymmetry.max():g}",
    )
    curve_ax.legend(title="noise", fontsize=8, loc="upper right")
    return fig


def plot_curves_over_time(
    fig: plt.Figure, ax: plt.Axes, curves: np.ndarray, times: np.ndarray, time_label: str
) -> None:
    """One load curve per time (rows of `curves`), coloured by time, with a colorbar for it."""
    norm = colors.Normalize(vmin=float(times.min()), vmax=float(max(times.max(), times.min() + 1)))
    cmap = plt.get_cmap("viridis")
    for time, curve in zip(times, curves, strict=True):
        ax.plot(np.arange(curves.shape[1]), curve, "-", marker=".", color=cmap(norm(time)), alpha=0.9)
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.05, pad=0.03)
    bar.set_label(time_label)


@dataclass(frozen=True)
class LoadDynamicsCase:
    """One row of Fig. 4: a DNN's load curves per epoch (or None) beside a spring chain's per step."""

    title: str
    spring_curves: np.ndarray  # (n_records, L + 1)
    spring_steps: np.ndarray  # (n_records,)
    dnn_curves: np.ndarray | None = None  # (n_epochs, K + 1)
    dnn_epochs: np.ndarray | None = None  # (n_epochs,)
    spring_title: str = ""


def plot_load_dynamics(cases: Sequence[LoadDynamicsCase]) -> plt.Figure:
    """Load curves as DNNs train (D_l per epoch, left) beside spring–block chains (y − x_l per step, right),
    one row per case (paper 2, Fig. 4); the DNN column is left out when no case has one."""
    set_theme()
    with_dnn = any(case.dnn_curves is not None for case in cases)
    n_cols = 2 if with_dnn else 1
    fig, axes = plt.subplots(
        len(cases), n_cols, figsize=(5.8 * n_cols, 3.9 * len(cases)), squeeze=False, layout="constrained"
    )
    for row, case in zip(axes, cases, strict=True):
        if with_dnn and case.dnn_curves is not None:
            plot_curves_over_time(
                fig, row[0], np.asarray(case.dnn_curves), np.asarray(case.dnn_epochs), "epoch"
            )
            row[0].set(
                xlabel="layer l (0 = input)",
                ylabel="D_l = log(Tr Σ_w / Tr Σ_b)",
                title=f"DNN: {case.title}",
            )
        elif with_dnn:
            row[0].set_visible(False)
        plot_curves_over_time(
            fig, row[-1], np.asarray(case.spring_curves), np.asarray(case.spring_steps), "simulation step"
        )
        row[-1].set(
            xlabel="block l (0 = wall)",
            ylabel="distance to target y − x_l",
            title=f"Spring–block: {case.spring_title or case.title}",
        )
    fig.suptitle("Load curves during training (left) and spring–block simulation (right)")
    return fig


def plot_springblock_orders(panels: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Phase diagrams of several chains (e.g. first order, second order with noise in the force, Langevin)
    side by side on one colour scale (paper 2, Figs. 3, S13, S14)."""
    set_theme()
    norm = curvature_norm(np.concatenate([curvature_grid(f).to_numpy().ravel() for f in panels.values()]))
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(4.8 * len(panels) + 1.5, 4.6),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for ax, (title, frame) in zip(axes[0], panels.items(), strict=True):
        mesh = draw_phase(ax, frame, norm, title)
    for ax in axes[0, 1:]:
        ax.set_ylabel("")
    add_curvature_colorbar(fig, mesh, list(axes[0]))
    fig.suptitle("Spring–block phase diagrams: load-curve curvature over noise × friction asymmetry")
    return fig
