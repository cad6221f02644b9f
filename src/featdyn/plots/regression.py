"""Figure of regression load curves: RMSE of the optimal affine regressor per layer (paper 2, Fig. S12)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np

from featdyn.curvature import curvature
from featdyn.plots import set_theme


def plot_regression_load(records: Mapping[str, Mapping[str, np.ndarray]]) -> plt.Figure:
    """(a) Final training (solid) and test (dashed) regression load curves R_l of every training over the
    input and hidden layers; (b) the curvature of the training curve over epochs."""
    set_theme()
    fig, (curve_ax, bend_ax) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    colours = plt.get_cmap("tab10")(np.arange(10))
    for colour, (name, result) in zip(colours, records.items(), strict=False):
        final = result["train_load"][-1][:-1]
        label = (
            f"{name}: κ = {float(result['curvature']):+.4f}, "
            f"RMSE train {float(result['train_rmse']):.3f} / test {float(result['test_rmse']):.3f}"
        )
        curve_ax.plot(final, "o-", color=colour, label=label)
        curve_ax.plot(result["test_load"][:-1], "s--", color=colour, alpha=0.7, fillstyle="none")
        bend_ax.plot(
            result["curve_epochs"], curvature(result["train_load"][:, :-1]), ".-", color=colour, label=name
        )
    curve_ax.set(
        xlabel="layer l (0 = input)",
        ylabel="R_l = RMSE of the best affine fit",
        title="(a) Regression load curves (train solid, test dashed)",
    )
    curve_ax.legend(fontsize=7)
    bend_ax.axhline(0.0, color="0.3", linestyle=":", linewidth=1)
    bend_ax.set(
        xlabel="epoch", ylabel="curvature (< 0 concave, > 0 convex)", title="(b) Curvature over training"
    )
    bend_ax.legend(fontsize=8)
    fig.suptitle("Regression loads: noisy training convex, lazy training concave")
    return fig
