"""Figure of the CNN guided by its load curve: load curves and test accuracy per phase (paper 2, Fig. S2)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from featdyn.curvature import curvature
from featdyn.plots import set_theme
from featdyn.plots.separation import draw_train_test_curves


def phase_label(name: str, dropout: float) -> str:
    return "Adam to near convergence" if name == "converged" else f"then dropout {dropout:g}"


def guided_frame(records: Mapping[str, Mapping[str, np.ndarray]]) -> pd.DataFrame:
    """One row per seed and phase: curvatures and accuracies of `featdyn.guided.guided_runs`' records."""
    rows = []
    for key, phase in records.items():
        seed, _, name = key.partition("/")
        rows.append(
            {
                "seed": int(seed),
                "phase": phase_label(name, float(phase["dropout"])),
                "train curvature": float(phase["curvature"]),
                "test curvature": float(phase["test_curvature"]),
                "test accuracy": float(phase["test_acc"]),
            }
        )
    return pd.DataFrame(rows)


def plot_guided(records: Mapping[str, Mapping[str, np.ndarray]]) -> plt.Figure:
    """(a) Final training (solid) and test (dashed) load curves of each phase, first seed; (b) curvature of
    the training load curve over the epochs of each phase; (c) test accuracy per phase, mean over seeds
    with each seed as a point. Curves cover the input and conv layers (the curvature's range)."""
    set_theme()
    fig, (curve_ax, bend_ax, acc_ax) = plt.subplots(
        1, 3, figsize=(16, 4.6), gridspec_kw={"width_ratios": [1.2, 1.2, 1]}, layout="constrained"
    )
    first_seed = next(iter(records)).partition("/")[0]
    shown = {k.partition("/")[2]: p for k, p in records.items() if k.partition("/")[0] == first_seed}
    colours = plt.get_cmap("tab10")(np.arange(10))
    curves = {
        phase_label(name, float(phase["dropout"])): (phase["train_D"][-1][:-1], phase["test_D"][:-1])
        for name, phase in shown.items()
    }
    title = f"(a) Load curves at the end of each phase (seed {first_seed})"
    draw_train_test_curves(curve_ax, curves, title, colours)
    for colour, label, phase in zip(colours, curves, shown.values(), strict=False):
        bend_ax.plot(phase["epochs"], curvature(phase["train_D"][:, :-1]), ".-", color=colour, label=label)
    bend_ax.axhline(0.0, color="0.3", linestyle=":", linewidth=1)
    bend_ax.set(
        xlabel="epoch",
        ylabel="curvature (< 0 concave, > 0 convex)",
        title="(b) Training load-curve curvature",
    )
    bend_ax.legend(fontsize=7)
    frame = guided_frame(records)
    order = list(dict.fromkeys(frame["phase"]))
    means = frame.groupby("phase", sort=False)["test accuracy"].mean().reindex(order)
    acc_ax.bar(range(len(order)), means.to_numpy(), color=colours[: len(order)], alpha=0.6)
    for i, name in enumerate(order):
        values = frame.loc[frame["phase"] == name, "test accuracy"].to_numpy()
        acc_ax.plot(np.full(len(values), i), values, "k.", ms=8)
        acc_ax.text(i, means[name], f"{means[name]:.3f}", ha="center", va="bottom", fontsize=8)
    low = float(frame["test accuracy"].min())
    acc_ax.set_ylim(max(0.0, low - 0.05), 1.0)
    acc_ax.set_xticks(range(len(order)), order, rotation=20, ha="right", fontsize=8)
    acc_ax.set(ylabel="test accuracy", title="(c) Test accuracy per phase")
    fig.suptitle("Guiding a CNN by its load curve: concave after Adam, then dropout continuations")
    return fig
