"""Figure of the temporal ensembles (docs/definitions.md §13; beyond the papers): accuracy,
cross-entropy and ECE of each method against the window W, one row per evaluation set."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from featdyn.plots import set_theme

METRIC_LABELS = {"accuracy": "accuracy", "cross_entropy": "cross-entropy", "ece": "ECE (15 bins)"}
METHOD_STYLES = {
    "checkpoint": {"color": "#d62728", "marker": "^", "label": "checkpoint ensemble"},
    "weight_average": {"color": "#2ca02c", "marker": "D", "label": "weight average (BN recomputed)"},
}


def method_lines(table: pd.DataFrame) -> list[tuple[pd.DataFrame, dict[str, object]]]:
    """(rows, plot style) of every line: the composite ensemble per depth, then the other methods."""
    depths = sorted(table[table["method"] == "composite"]["depth"].unique())
    blues = sns.color_palette("Blues", len(depths) + 1)[1:]
    lines = [
        (
            table[(table["method"] == "composite") & (table["depth"] == depth)],
            {"color": color, "marker": "o", "label": f"composite ensemble, depth {depth}"},
        )
        for depth, color in zip(depths, blues)
    ]
    return lines + [(table[table["method"] == method], style) for method, style in METHOD_STYLES.items()]


def plot_ensembles(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Rows: evaluation sets; columns: accuracy, cross-entropy, ECE against the window W (symlog axis,
    so W = 0 shows). f^(t) is the dashed black line. `table` holds one run (`ensemble_table`)."""
    set_theme()
    eval_sets = list(dict.fromkeys(table["eval_set"]))
    windows = sorted(table["window"].unique())
    fig, axes = plt.subplots(
        len(eval_sets), len(METRIC_LABELS), figsize=(13, 3.3 * len(eval_sets)), squeeze=False, sharex=True
    )
    for row, eval_set in enumerate(eval_sets):
        rows = table[table["eval_set"] == eval_set].sort_values("window")
        single = rows[rows["method"] == "single"]
        for col, metric in enumerate(METRIC_LABELS):
            ax = axes[row][col]
            ax.plot(single["window"], single[metric], color="black", linestyle="--", label="f^(t) alone")
            for line, style in method_lines(rows):
                ax.plot(line["window"], line[metric], ms=4, **style)
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xticks(windows, [str(w) for w in windows])
            ax.minorticks_off()
            ax.set_ylabel(f"{METRIC_LABELS[metric]}\n{eval_set}" if col == 0 else METRIC_LABELS[metric])
    for ax in axes[-1]:
        ax.set_xlabel("Window W (epochs)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=3, bbox_to_anchor=(0.5, 1.0), frameon=False)
    epoch = int(table["epoch"].iloc[0])
    fig.suptitle(title or f"Temporal ensembles at epoch {epoch}", y=1.06)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig
