"""Densities of per-sample temporal consistency, clean against noisy-label training (paper Fig. 7,
16, 17): reflected KDE on [0, 1], with the share of samples at exactly 1.0 in the legend."""

from __future__ import annotations

import math
from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from featdyn.plots import CLEAN_NOISY_PALETTE, set_theme
from featdyn.stats import reflected_kde, share_at_one


def facet_values(frame: pd.DataFrame, facet: str) -> list:
    """The panels: one per value of `facet` (in order of appearance), or a single one."""
    return list(pd.unique(frame[facet])) if facet in frame.columns else [None]


def condition_palette(conditions: list) -> dict:
    """Clean/noisy colours when the conditions are those two, else one seaborn colour per condition."""
    if set(conditions) <= set(CLEAN_NOISY_PALETTE):
        return dict(CLEAN_NOISY_PALETTE)
    return dict(zip(conditions, sns.color_palette(n_colors=len(conditions))))


def plot_consistency_kdes(
    frame: pd.DataFrame,
    facet: str = "eval_set",
    value: str = "value",
    condition: str = "condition",
    palette: Mapping[str, object] | None = None,
    max_columns: int = 4,
    title: str | None = None,
) -> plt.Figure:
    """One panel per value of `facet` (at most `max_columns` per row); reflected KDE of `value` for each
    condition (clean, noisy, or e.g. run names with `palette` or seaborn colours)."""
    set_theme()
    panels = facet_values(frame, facet)
    palette = palette or condition_palette(list(pd.unique(frame[condition])))
    columns = min(len(panels), max_columns)
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.remove()
    for ax, panel in zip(axes.flat, panels):
        data = frame if panel is None else frame[frame[facet] == panel]
        for name, color in palette.items():
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
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
