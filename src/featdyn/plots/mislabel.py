"""Mislabelled-sample detection (docs/definitions.md §14): ROC and precision-recall curves, AUROC / AP
with bootstrap intervals, and test accuracy of the retrains without suspect samples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from featdyn.plots import set_theme

BASELINE_COLOURS = {
    "loss": "#d62728",
    "confidence": "#ff7f0e",
    "variability": "#8c564b",
    "aum": "#1f77b4",
    "forgetting": "#7f7f7f",
}
"""One colour per established score kind; consistency columns share a sequential palette."""

RETRAIN_STYLES = {
    "original": {"color": "#7f7f7f", "lw": 2.5},
    "filtered": {"color": "#1f77b4", "lw": 1.5},
    "oracle": {"color": "#2ca02c", "lw": 1.5, "ls": "--"},
}


def score_colours(scores: Sequence[str]) -> dict[str, str]:
    """A colour per score column: the kind's colour for the baselines, shades of green-blue for the
    consistency columns (lighter = shallower split / shorter window, in column order)."""
    consistency = [s for s in scores if s.startswith("consistency")]
    shades = sns.color_palette("viridis", max(len(consistency), 1))
    colours = {s: shade for s, shade in zip(consistency, shades, strict=False)}
    for score in scores:
        if score not in colours:
            colours[score] = BASELINE_COLOURS[score.split("_")[0]]
    return colours


def plot_detection_curves(
    curves: pd.DataFrame, table: pd.DataFrame, scores: Sequence[str] | None, run: str
) -> plt.Figure:
    """ROC and precision-recall curves of one run's scores (`featdyn.mislabel.detection_curves`), with
    AUROC and AP from the evaluation table in the legend; chance: the diagonal and the prevalence."""
    set_theme()
    table = table.set_index("score")
    scores = list(table.index) if scores is None else list(scores)
    colours = score_colours(scores)
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    for score in scores:
        row = table.loc[score]
        style = {"color": colours[score], "lw": 1.2 if score.startswith("consistency") else 1.8}
        roc = curves[(curves["score"] == score) & (curves["curve"] == "roc")]
        pr = curves[(curves["score"] == score) & (curves["curve"] == "pr")]
        roc_ax.plot(roc["x"], roc["y"], label=f"{score}: AUROC {row.auroc:.3f}, AP {row.ap:.3f}", **style)
        pr_ax.step(pr["x"], pr["y"], where="post", **style)
    prevalence = table["n_noisy"].iloc[0] / table["n"].iloc[0]
    roc_ax.plot([0, 1], [0, 1], color="black", lw=0.8, ls=":")
    pr_ax.axhline(prevalence, color="black", lw=0.8, ls=":")
    roc_ax.set(
        xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1)
    )
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision–recall", xlim=(0, 1), ylim=(0, 1.02))
    fig.legend(
        *roc_ax.get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False
    )
    n, wrong = int(table["n"].iloc[0]), int(table["n_noisy"].iloc[0])
    fig.suptitle(f"{run}: detecting the {wrong} mislabelled of {n} training samples ({prevalence:.1%})")
    fig.tight_layout()
    return fig


def plot_detection_summary(table: pd.DataFrame) -> plt.Figure:
    """AUROC and AP of every score (rows) with bootstrap intervals, one colour per run; dotted: chance
    (AUROC 0.5, AP = the run's share of mislabelled samples)."""
    set_theme()
    scores = list(dict.fromkeys(table["score"]))
    runs = list(dict.fromkeys(table["run"]))
    palette = dict(zip(runs, sns.color_palette("tab10", len(runs)), strict=True))
    offsets = np.linspace(-0.25, 0.25, len(runs)) if len(runs) > 1 else np.zeros(1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(scores) + 1.8), sharey=True)
    for ax, metric, label in zip(axes, ("auroc", "ap"), ("AUROC", "average precision"), strict=True):
        for run, offset in zip(runs, offsets, strict=True):
            rows = table[table["run"] == run].set_index("score").loc[scores]
            y = np.arange(len(scores)) + offset
            errors = np.stack([rows[metric] - rows[f"{metric}_lo"], rows[f"{metric}_hi"] - rows[metric]])
            ax.errorbar(rows[metric], y, xerr=errors, fmt="o", ms=4, capsize=2, color=palette[run], label=run)
            chance = 0.5 if metric == "auroc" else rows["n_noisy"].iloc[0] / rows["n"].iloc[0]
            ax.axvline(chance, color=palette[run], lw=0.8, ls=":")
        ax.set(xlabel=f"{label} (95 % bootstrap interval)", title=label)
    axes[0].set_yticks(np.arange(len(scores)), scores)
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower left", frameon=True)
    fig.suptitle("Mislabelled training samples: how well each training-dynamics score ranks them")
    fig.tight_layout()
    return fig


def plot_retrain(curves: Mapping[str, pd.DataFrame], table: pd.DataFrame, run: str) -> plt.Figure:
    """Test accuracy per epoch of the original run (its whole length) beside the retrains without the
    most suspect samples (`filtered`) and without the mislabelled ones (`oracle`)."""
    set_theme()
    rows = table.set_index("variant")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for variant, metrics in curves.items():
        row = rows.loc[variant]
        what = {
            "original": "original, every sample",
            "filtered": f"without the {row.dropped} most suspect by {row.selection} "
            f"({row.dropped_mislabelled / max(row.dropped, 1):.0%} of them mislabelled)",
            "oracle": f"without the {row.dropped} mislabelled (oracle)",
        }[variant]
        label = f"{what}: {row.test_acc:.3f} at epoch {row.epochs}"
        ax.plot(metrics["epoch"], metrics["test_acc"], label=label, **RETRAIN_STYLES[variant])
    epochs = int(rows["epochs"].iloc[0])
    if epochs < curves["original"]["epoch"].max():
        ax.axvline(epochs, color="black", lw=0.8, ls=":")
    ax.set(xlabel="epoch", ylabel="test accuracy", title=f"{run}: retraining without suspect labels")
    ax.legend(loc="lower right", frameon=True, fontsize="small")
    fig.tight_layout()
    return fig
