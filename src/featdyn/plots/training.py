"""Training curves (paper Fig. 19)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from featdyn.plots import set_theme


def plot_training_curves(metrics: pd.DataFrame) -> plt.Figure:
    """Loss and accuracy per epoch, train (dashed) and test (solid), one colour per run.

    `metrics` is the concatenation of the runs' metrics tables with a `run` column.
    """
    set_theme()
    long = metrics.melt(
        id_vars=["run", "epoch"],
        value_vars=["train_loss", "test_loss", "train_acc", "test_acc"],
        var_name="metric",
    )
    long[["split", "quantity"]] = long["metric"].str.split("_", n=1, expand=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, quantity, label in zip(axes, ["loss", "acc"], ["cross-entropy", "accuracy"], strict=True):
        sns.lineplot(
            data=long[long["quantity"] == quantity],
            x="epoch",
            y="value",
            hue="run",
            style="split",
            style_order=["test", "train"],
            ax=ax,
        )
        ax.set(xlabel="epoch", ylabel=label, title=f"{label} (train labels as trained on)")
    axes[1].set_ylim(0, 1)
    axes[0].get_legend().remove()
    sns.move_legend(axes[1], "center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle("Training curves")
    return fig
