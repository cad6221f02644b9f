"""Figures of the generalization surrogates (docs/definitions.md §12; beyond the papers): the class-wise
gap against each surrogate with Spearman ρ, and the surrogates over reference epochs, augmented against
plain."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from featdyn.plots import set_theme

SURROGATE_LABELS = {
    "mmd2_aug": "MMD²(A_k, T_k)",
    "mmd2_plain": "MMD²(P_k, T_k)",
    "sw2_aug": "SW2(A_k, T_k)",
    "sw2_plain": "SW2(P_k, T_k)",
}
GAP_LABELS = {"acc_gap": "accuracy gap (train − test)", "ce_gap": "cross-entropy gap (test − train)"}
PLAIN_COLOR = "#222222"


def rho_of(rho: pd.DataFrame, gap: str, surrogate: str, scope: str, run: str = "all") -> float:
    """The one ρ of a (gap, surrogate) in a `surrogate_correlations` frame already narrowed to one depth,
    window and bandwidth."""
    pick = rho[(rho["scope"] == scope) & (rho["run"] == run) & (rho["gap"] == gap)]
    return float(pick[pick["surrogate"] == surrogate]["rho"].iloc[0])


def plot_gap_vs_surrogates(table: pd.DataFrame, rho: pd.DataFrame, title: str = "") -> plt.Figure:
    """Rows: accuracy and cross-entropy gap; columns: the four surrogates. One point per (run, reference
    epoch, class) of one depth, window and bandwidth, coloured by run; Spearman ρ per run in the legend
    of each panel and over all runs in its title. `table` and `rho` are already narrowed to that depth,
    window and bandwidth (`rho`: `surrogate_correlations`)."""
    set_theme()
    runs = sorted(table["run"].unique())
    palette = dict(zip(runs, sns.color_palette("deep", len(runs))))
    gaps, surrogates = list(GAP_LABELS), list(SURROGATE_LABELS)
    fig, axes = plt.subplots(len(gaps), len(surrogates), figsize=(4.1 * len(surrogates), 3.6 * len(gaps)))
    for i, gap in enumerate(gaps):
        for j, surrogate in enumerate(surrogates):
            ax = axes[i][j]
            for run in runs:
                rows = table[table["run"] == run]
                ax.scatter(
                    rows[surrogate],
                    rows[gap],
                    s=14,
                    alpha=0.7,
                    color=palette[run],
                    label=f"{run}: ρ = {rho_of(rho, gap, surrogate, 'run', run):.2f}",
                )
            ax.set_title(f"all runs: ρ = {rho_of(rho, gap, surrogate, 'all'):.2f}", fontsize=10)
            ax.set_xlabel(SURROGATE_LABELS[surrogate])
            ax.set_ylabel(GAP_LABELS[gap] if j == 0 else "")
            ax.legend(fontsize=8, loc="best", frameon=True)
    for j in (0, 2):  # the augmented and plain distance of one family on one scale
        for i in range(len(gaps)):
            left, right = axes[i][j].get_xlim(), axes[i][j + 1].get_xlim()
            limits = (min(left[0], right[0]), max(left[1], right[1]))
            axes[i][j].set_xlim(limits)
            axes[i][j + 1].set_xlim(limits)
    fig.suptitle(title or "Class-wise generalization gap against the surrogates")
    fig.tight_layout()
    return fig


def plot_surrogates_over_epochs(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Rows: split depths; columns: MMD², SW2, accuracy gap, cross-entropy gap, each the mean over
    classes against the reference epoch t. Plain distances (P_k vs T_k) in black, augmented ones
    (A_k vs T_k) one dashed line per window W. `table` holds one run and one bandwidth."""
    set_theme()
    depths = sorted(table["depth"].unique())
    windows = sorted(table["window"].unique())
    palette = dict(zip(windows, sns.color_palette("viridis", len(windows))))
    means = table.groupby(["depth", "window", "epoch"], as_index=False).mean(numeric_only=True)
    fig, axes = plt.subplots(len(depths), 4, figsize=(16, 3.4 * len(depths)), squeeze=False, sharex=True)
    for row, depth in enumerate(depths):
        at_depth = means[means["depth"] == depth]
        plain = at_depth[at_depth["window"] == windows[0]]
        for col, family in enumerate(("mmd2", "sw2")):
            ax = axes[row][col]
            ax.plot(
                plain["epoch"],
                plain[f"{family}_plain"],
                color=PLAIN_COLOR,
                marker="o",
                ms=3,
                label="plain P_k",
            )
            for window in windows:
                rows = at_depth[at_depth["window"] == window]
                ax.plot(
                    rows["epoch"],
                    rows[f"{family}_aug"],
                    color=palette[window],
                    linestyle="--",
                    marker="s",
                    ms=3,
                    label=f"augmented A_k, W = {window}",
                )
            ax.set_ylabel(
                f"{'MMD²' if family == 'mmd2' else 'SW2'} to T_k\n(mean over classes), depth {depth}"
            )
        for col, gap in ((2, "acc_gap"), (3, "ce_gap")):
            axes[row][col].plot(plain["epoch"], plain[gap], color=PLAIN_COLOR, marker="o", ms=3)
            axes[row][col].set_ylabel(f"{GAP_LABELS[gap]}\n(mean over classes)")
    for ax in axes[-1]:
        ax.set_xlabel("Reference epoch t")
    axes[0][0].legend(fontsize=8, loc="best", frameon=True)
    fig.suptitle(title or "Surrogates over training: augmented against plain")
    fig.tight_layout()
    return fig
