"""Figure: class-wise gap against each surrogate with Spearman ρ per run and over all runs (§12)."""

import pandas as pd

from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.surrogates import plot_gap_vs_surrogates

sm = snakemake  # noqa: F821
log_to(sm.log[0])
depth, window, bandwidth = sm.params.depth, sm.params.window, sm.params.bandwidth


def narrowed(frame: pd.DataFrame) -> pd.DataFrame:
    chosen = (frame["depth"] == depth) & (frame["window"] == window) & (frame["bandwidth"] == bandwidth)
    return frame[chosen]


table = narrowed(pd.read_csv(sm.input.table, sep="\t"))
rho = narrowed(pd.read_csv(sm.input.spearman, sep="\t"))
title = (
    f"Class-wise gap against the surrogates: depth {depth}, window W = {window}, σ = {bandwidth:g} × median"
)
save_figure(plot_gap_vs_surrogates(table, rho, title), sm.output[0])
