"""Figure: memory heatmaps of one run on one evaluation set, one row per depth (paper Fig. 2)."""

from featdyn.composite_results import read_band
from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.composite import plot_memory

sm = snakemake  # noqa: F821
log_to(sm.log[0])
results = {depth: read_band(path) for depth, path in zip(sm.params.depths, sm.input.bands)}
title = f"{sm.wildcards.run}, {sm.wildcards.eval_set} set"
save_figure(plot_memory(results, title, depth_labels=sm.params.labels), sm.output[0])
