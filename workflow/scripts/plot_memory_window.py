"""Figure: memory window W(t) against t for every run, depth and evaluation set (paper Fig. 3)."""

from featdyn.composite_results import memory_window_frame
from featdyn.io import log_to
from featdyn.plots import depth_label, save_figure
from featdyn.plots.composite import plot_memory_window

sm = snakemake  # noqa: F821
log_to(sm.log[0])
labels = [
    {"run": run, "eval_set": eval_set, "depth": depth_label(depth, sm.params.labels[run])}
    for run, eval_set, depth in sm.params.band_keys
]
frame = memory_window_frame(zip(labels, sm.input.bands))
save_figure(plot_memory_window(frame, sm.params.threshold), sm.output[0])
