"""Figures of the linear networks: load curves beside the μ_r = 0 spring–block chain (paper 2, Fig. 5)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from featdyn.plots import set_theme

MU_L_MARKERS = "osD^v<>"


def hidden_part(curve: np.ndarray) -> np.ndarray:
    """A load curve over the input and hidden layers (the output layer left out, as the curvature does)."""
    return np.asarray(curve)[..., :-1]


def draw_linear_load_curves(ax: plt.Axes, trainings: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Final training load curve D_l of every linear-network training, its curvature in the legend; the
    shared initial curve dotted."""
    first = next(iter(trainings.values()))
    ax.plot(hidden_part(first["D"][0]), ":", color="0.5", label="initialisation")
    for name, result in trainings.items():
        ax.plot(hidden_part(result["D"][-1]), "o-", label=f"{name}: κ = {float(result['curvature']):+.3f}")
    ax.set(xlabel="layer l (0 = input)", ylabel="D_l = log(Tr Σ_w / Tr Σ_b)")
    ax.legend(fontsize=8)


def draw_leftward_chain(ax: plt.Axes, chain: pd.DataFrame) -> None:
    """Final load curves y − x_l of the μ_r = 0 chain: Eq. 8 as lines (one colour per ε), the simulation as
    markers (one shape per μ_l)."""
    levels = sorted(chain["eps"].unique())
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.85, len(levels)))
    frictions = sorted(chain["mu_l"].unique())
    markers = dict(zip(frictions, MU_L_MARKERS, strict=False))
    sizes = dict(
        zip(frictions, np.linspace(10, 5, len(frictions)), strict=True)
    )  # coinciding markers stay visible
    for colour, eps in zip(colours, levels, strict=True):
        cells = chain[chain["eps"] == eps]
        eq8 = cells[cells["mu_l"] == cells["mu_l"].min()].sort_values("layer")
        bend = eq8["curvature_eq8"].iloc[0]
        ax.plot(eq8["layer"], eq8["eq8"], "-", color=colour, label=f"ε = {eps:g}: Eq. 8, κ = {bend:+.3f}")
        for mu_l, cell in cells.groupby("mu_l"):
            ax.plot(
                cell["layer"],
                cell["simulated"],
                markers[mu_l],
                color=colour,
                fillstyle="none",
                ms=sizes[mu_l],
            )
    for mu_l, marker in markers.items():
        ax.plot(
            [], [], marker, color="0.3", fillstyle="none", ms=sizes[mu_l], label=f"simulated, μ_l = {mu_l:g}"
        )
    error = chain["max_error"].max()
    ax.set(
        xlabel="block l (0 = wall)",
        ylabel="distance to target y − x_l",
        title=f"(b) Chain with μ_r = 0: simulation vs Eq. 8 (max |Δx| = {error:.1e})",
    )
    ax.legend(fontsize=7)


def plot_fig5(trainings: Mapping[str, Mapping[str, np.ndarray]], chain: pd.DataFrame) -> plt.Figure:
    """Paper 2, Fig. 5: (a) load curves of orthogonally initialised linear networks after training with a
    small step, a large step and dropout; (b) the equilibrium of the chain with friction for leftward
    moves only, linear without noise and convex with it."""
    set_theme()
    fig, (net_ax, chain_ax) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    draw_linear_load_curves(net_ax, trainings)
    net_ax.set_title("(a) Linear networks, orthogonal init and data (input and hidden layers)")
    draw_leftward_chain(chain_ax, chain)
    fig.suptitle("Noise bends the load curve of linear networks and of the μ_r = 0 chain convex")
    return fig
