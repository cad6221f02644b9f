"""Figure: per-sample consistency densities of every analysed run on the composite evaluation sets."""

from featdyn.composite_results import read_band
from featdyn.consistency import consistency_frame
from featdyn.io import log_to
from featdyn.plots import save_figure
from featdyn.plots.consistency import plot_consistency_kdes

sm = snakemake  # noqa: F821
log_to(sm.log[0])
labels = [
    {"condition": sm.params.runs[run], "eval_set": eval_set, "depth": depth}
    for run, eval_set, depth in sm.params.files
]
frame = consistency_frame(zip(labels, map(read_band, sm.input.bands)), sm.params.window)
title = f"Per-sample consistency c(x; t − {sm.params.window}, t) per run, at its figure depth"
save_figure(plot_consistency_kdes(frame, facet="eval_set", title=title), sm.output[0])
