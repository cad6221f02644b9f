"""Densities of per-sample temporal consistency, clean against noisy-label training (paper Fig. 7,
16, 17): reflected KDE on [0, 1], with the share of samples at exactly 1.0 in the legend."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from featdyn.plots import CLEAN_NOISY_PALETTE, set_theme
from featdyn.stats import reflected_kde, share_at_one


def facet_values(frame: pd.DataFrame, facet: str) -> list:
    """The panels: one per value of `facet` (in order of appearance), or a single one."""
    return list(pd.unique(frame[facet])) if facet in frame.columns else [None]


def plot_consistency_kdes(
    frame: pd.DataFrame, facet: str = "eval_set", value: str = "value", condition: str = "condition"
) -> plt.Figure:
    """One panel per value of `facet`; reflected KDE of `value` for each condition (clean, noisy)."""
    set_theme()
    panels = facet_values(frame, facet)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        data = frame if panel is None else frame[frame[facet] == panel]
        for name, color in CLEAN_NOISY_PALETTE.items():
            values = data.loc[data[condition] == name, value].to_numpy()
            if values.size == 0:
                continue
            grid, density = reflected_kde(values)
            label = f"{name} (share at 1.0: {share_at_one(values):.1%}, n={values.size})"
            ax.plot(grid, density, color=color, linewidth=1.8, label=label)
            ax.fill_between(grid, density, color=color, alpha=0.15)
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("Per-sample consistency")
        ax.set_ylabel("Density")
        ax.set_title("Consistency" if panel is None else f"{facet.replace('_', ' ')}: {panel}")
        ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig
