"""Figure: AUROC and average precision of every mislabel score with bootstrap intervals, per run (§14)."""

import pandas as pd

from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.mislabel import plot_detection_summary

sm = snakemake  # noqa: F821
log_to(sm.log[0])
save_figure(plot_detection_summary(pd.read_csv(sm.input.table, sep="\t")), sm.output[0])
